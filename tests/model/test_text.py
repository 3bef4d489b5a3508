"""The one tokenisation path, called from several threads at once (analyze, serve)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from helpers import WORDS

from meldctl.model.text import load_tokenizer, token_count, tokenize


def _texts(count: int, seed: int = 0) -> list[str]:
    """Utterances of 1 to 150 words: lengths that differ wildly, so an unpadded batch cannot be a tensor."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 150))) for _ in range(count)]


def test_counting_in_one_thread_while_another_tokenises_batches(tiny_bert: Path) -> None:
    """analyze counts tokens in its decoding thread while the main thread tokenises padded batches with the same
    fast tokenizer: every batch must come back padded and every count untruncated."""
    tokenizer = load_tokenizer(str(tiny_bert))
    texts = _texts(200)
    expected = [len(tokenizer(t)["input_ids"]) for t in texts]
    counted: list[int] = []
    errors: list[BaseException] = []

    def count() -> None:
        try:
            for _ in range(5):
                counted.extend(token_count(tokenizer, t) for t in texts)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=count)
    thread.start()
    shapes = []
    for _ in range(5):
        for start in range(0, len(texts), 8):
            batch = tokenize(tokenizer, texts[start : start + 8], 64)
            shapes.append(tuple(batch["input_ids"].shape))
    thread.join()
    assert not errors, errors[0]
    assert counted == expected * 5  # a count made with the other thread's truncation would be capped at 64
    assert all(rows <= 8 and length <= 64 for rows, length in shapes)
