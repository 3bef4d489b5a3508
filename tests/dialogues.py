"""A synthetic conversation set in which some labels can only be read from the line before.

Every dialogue is a cue line whose words carry its emotion ("i love this so happy": joy), answered by a
reply that is always the same word ("okay") and shares the cue's emotion. Alone, "okay" is any of the
emotions; after its cue it is one. A model with dialogue context must learn the replies, the same model with
`--no-context` must not, and a model without context cannot.
"""

from __future__ import annotations

import random
from pathlib import Path

from meldctl.data.manifest import ManifestRow, write_manifest

CUES = {
    "joy": ["i love this so happy", "wow great love it", "oh my god yes happy", "so happy i love you"],
    "sadness": ["i am so sad", "no no sad sorry", "sad so sad oh no", "i think i am sad"],
    "anger": ["i hate you so angry", "what why angry hate", "angry angry i hate it", "don't you hate this angry"],
}
SENTIMENT = {"joy": "positive", "sadness": "negative", "anger": "negative"}
REPLY = "okay"
SPEAKERS = ("Monica", "Ross", "Rachel", "Joey")


def dialogue_rows(split: str, dialogues: int, seed: int) -> list[ManifestRow]:
    """`dialogues` two-line dialogues (cue, reply), labels balanced over the cue emotions."""
    rng = random.Random(seed)
    rows = []
    emotions = sorted(CUES)
    for d in range(dialogues):
        emotion = emotions[d % len(emotions)]
        first, second = rng.sample(SPEAKERS, 2)
        for u, (text, speaker) in enumerate(((rng.choice(CUES[emotion]), first), (REPLY, second))):
            rows.append(
                ManifestRow(
                    split=split,
                    dialogue_id=d,
                    utterance_id=u,
                    text=text,
                    speaker=speaker,
                    emotion=emotion,
                    sentiment=SENTIMENT[emotion],
                    clip=None,
                    audio=None,
                    duration_s=None,
                    status="missing",
                    error="no clip",
                )  # fmt: skip
            )
    rng.shuffle(rows)  # manifests need not be in dialogue order: dialogues come from the ids
    return rows


def write_dialogue_data(data_dir: Path, *, train: int = 48, test: int = 24) -> Path:
    """A text-only data folder (manifests only) with the synthetic dialogues; dev is a copy of test's kind."""
    for split, count, seed in (("train", train, 1), ("dev", test, 2), ("test", test, 3)):
        write_manifest(data_dir, split, dialogue_rows(split, count, seed))
    return data_dir


def reply_accuracy(rows: list[ManifestRow], emotions: list[str]) -> float:
    """Share of reply rows (the ambiguous ones) whose predicted emotion is right."""
    pairs = [(r.emotion, e) for r, e in zip(rows, emotions, strict=True) if r.text == REPLY]
    return sum(gold == got for gold, got in pairs) / len(pairs)


def train_dialogue_model(data_dir: Path, tiny_bert: Path, run_dir: Path, *, past: int, future: int = 0) -> Path:
    """A text model trained on the synthetic dialogues (a few seconds on a CPU); returns its best.pt."""
    from helpers import small_settings

    from meldctl.training.trainer import run_training

    settings = small_settings(
        data_dir,
        tiny_bert,
        model={"modalities": ["text"], "context_past": past, "context_future": future, "dropout": 0.0},
        train={"epochs": 25, "batch_size": 16, "lr": 3e-3, "patience": 0, "seed": 3},
    )
    result = run_training(settings.data, settings.model, settings.train, run_dir=run_dir)
    assert result.best_path is not None
    return result.best_path
