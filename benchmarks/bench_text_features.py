"""Text feature caching: meldctl's length-sorted batches beside naive max-length padding, on real MELD text.

Run: `python benchmarks/bench_text_features.py [--meld /work/shared/data/meld] [--limit N] [--threads 1]`.
It prepares text-only manifests from the MELD CSVs into a temporary folder (no clips needed) and encodes
every utterance of train, dev and test (13,708; `--limit N` keeps the first N, in manifest order) with the
frozen text encoder (`--text-model`, default the offline all-MiniLM-L6-v2) on the CPU.

Rows, same utterances, same model, same batch size, same thread count, in the same run:
- meldctl cache: `build_split` with the text spec, i.e. the real cache code: batches sorted by token length,
  each padded to its longest utterance; the time includes tokenising (twice: lengths, then batches) and
  writing the .npy memory map.
- naive: manifest order, every batch padded to max_length (128 tokens), the same encoder and mean pooling.
The padded-token counts are those the encoder actually received (counted inside `features`). The two
paths' features are compared at the end (they must agree: padding is masked out).
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import load_line, machine, print_table

from meldctl.data.cache import BuildContext, SplitCache, build_split
from meldctl.data.kinds import KINDS, TextKind
from meldctl.data.manifest import ManifestRow, read_manifest
from meldctl.model import MeldModel, ModelConfig, PreprocessConfig, build_model
from meldctl.model.text import load_tokenizer, tokenizer_digest, tokenizer_to_files
from meldctl.prepare import prepare
from meldctl.settings import DataSettings

# The batch size the cache code encodes with; the naive path uses the same one.
CACHE_BATCH = inspect.signature(TextKind.encode).parameters["batch_size"].default


class TokenCounter:
    """Wraps `TextEncoder.features` to count what the encoder was given: padded and real tokens, batches."""

    def __init__(self, features: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.inner, self.padded, self.real, self.batches = features, 0, 0, 0

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.padded += input_ids.numel()
        self.real += int(attention_mask.sum())
        self.batches += 1
        return self.inner(input_ids, attention_mask)


def meld_rows(meld: Path, folder: Path, limit: int | None) -> dict[str, list[ManifestRow]]:
    prepare(DataSettings(source=str(meld), data_dir=folder))
    rows = [row for split in ("train", "dev", "test") for row in read_manifest(folder, split)]
    rows = rows[:limit] if limit else rows
    return {split: [r for r in rows if r.split == split] for split in ("train", "dev", "test")}


def cache_path(
    rows: dict[str, list[ManifestRow]],
    folder: Path,
    model: MeldModel,
    tokenizer: Any,
    preprocess: PreprocessConfig,
    tokenizer_key: str | None,
) -> np.ndarray:
    kind = KINDS["text"]
    spec = kind.spec(model, preprocess, tokenizer_key)
    ctx = BuildContext(folder, model, preprocess, tokenizer, torch.device("cpu"), 0, lambda *a: None, lambda: False)
    arrays = [
        np.asarray(build_split(SplitCache(folder, kind, spec, split, r), ctx).array) for split, r in rows.items() if r
    ]
    return np.concatenate(arrays)


@torch.no_grad()
def naive_path(rows: dict[str, list[ManifestRow]], model, tokenizer, preprocess) -> np.ndarray:  # noqa: ANN001
    texts = [r.text for split_rows in rows.values() for r in split_rows]
    out = []
    for start in range(0, len(texts), CACHE_BATCH):
        tokens = tokenizer(
            texts[start : start + CACHE_BATCH],
            padding="max_length",
            truncation=True,
            max_length=preprocess.max_tokens,
            return_tensors="pt",
        )
        out.append(model.text.features(tokens["input_ids"], tokens["attention_mask"]).float().numpy())  # [B, D]
    return np.concatenate(out)


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld", type=Path, default=Path("/work/shared/data/meld"), help="folder of MELD CSVs")
    parser.add_argument("--limit", type=int, default=None, help="first N utterances only (quick run)")
    parser.add_argument("--text-model", default="minilm")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine(args.threads), flush=True)
    preprocess = PreprocessConfig()
    model = build_model(ModelConfig(modalities=("text",), text_model=args.text_model)).eval()
    tokenizer = load_tokenizer(args.text_model)
    tokenizer_key = tokenizer_digest(tokenizer_to_files(tokenizer))  # part of the cache key; computed untimed
    counter = TokenCounter(model.text.features)
    model.text.features = counter  # instance attribute: both paths call it through model.text

    with tempfile.TemporaryDirectory() as tmp:
        rows = meld_rows(args.meld, Path(tmp) / "meld", args.limit)
        total = sum(len(r) for r in rows.values())
        lengths = [
            len(ids)
            for ids in tokenizer(
                [r.text for v in rows.values() for r in v], truncation=True, max_length=preprocess.max_tokens
            )["input_ids"]
        ]
        naive_path({"warm-up": rows["train"][:8]}, model, tokenizer, preprocess)  # oneDNN and allocator warm-up
        results = {}
        for name, run in (
            ("naive: manifest order, pad to 128", lambda: naive_path(rows, model, tokenizer, preprocess)),
            (
                "meldctl cache: sorted, pad to batch max",
                lambda: cache_path(rows, Path(tmp) / "meld", model, tokenizer, preprocess, tokenizer_key),
            ),
        ):
            counter.padded = counter.real = counter.batches = 0
            seconds, features = timed(run)
            results[name] = (seconds, features, counter.padded, counter.real, counter.batches)
            print(f"  done: {name} in {seconds:.1f} s; {load_line('now')}", flush=True)

    (naive_s, naive_f, naive_pad, real, _), (cache_s, cache_f, cache_pad, _, _) = results.values()
    print(
        f"\ninputs: {total} MELD utterances ({', '.join(f'{s} {len(r)}' for s, r in rows.items())}) from "
        f"{args.meld}; text model {args.text_model}, batch {CACHE_BATCH}, max_tokens {preprocess.max_tokens}"
    )
    print(
        f"tokens per utterance (with [CLS]/[SEP]): mean {np.mean(lengths):.1f}, median {np.median(lengths):.0f}, "
        f"max {max(lengths)}; {load_line('after the runs')}\n"
    )
    table = []
    for name, (seconds, _, padded, real_tokens, batches) in results.items():
        table.append(
            [
                name,
                str(batches),
                f"{seconds:.1f}",
                f"{total / seconds:.1f}",
                f"{padded:,}",
                f"{real_tokens / padded:.0%}",
                f"{naive_s / seconds:.2f}x",
            ]
        )
    print_table(["path", "batches", "seconds", "utt/s", "padded tokens", "real share", "speed-up"], table)
    diff = float(np.abs(naive_f - cache_f).max())
    speedup = naive_s / cache_s
    print(f"\npadded tokens naive / cache: {naive_pad / cache_pad:.2f}x; real tokens {real:,}")
    print(f"max |feature difference| between the paths: {diff:.2e} (padding is masked, so they agree)")
    print(f"target: cache path >= 2x faster than naive: {speedup:.2f}x -> {'PASS' if speedup >= 2 else 'FAIL'}")


if __name__ == "__main__":
    main()
