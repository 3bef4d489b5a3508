"""Utterances in their dialogues: grouping, batches that keep dialogues whole, and the context keys of a batch.

MELD's rows are utterances; a conversation is the rows of one `dialogue_id`, in `utterance_id` order. A model
with dialogue context (`meldctl.model.context`) needs each batch to hold whole dialogues, so that every
utterance's window is in the batch with it; these functions make such batches for training (shuffled by
dialogue), evaluation and prediction (in order), and the integer tensors that place each row.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from meldctl.data.manifest import ManifestRow


def dialogue_groups(rows: Sequence[ManifestRow]) -> list[list[int]]:
    """Row indices by dialogue, each in utterance order; dialogues in the order they first appear.

    Every row belongs to one group: a row whose clip is broken stays in its dialogue (its modalities are
    missing there, not the row).
    """
    groups: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.dialogue_id, []).append(index)
    return [sorted(members, key=lambda i: rows[i].utterance_id) for members in groups.values()]


def pack_dialogues(groups: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Consecutive dialogues packed into batches of at most `batch_size` utterances, never split...

    ...unless one dialogue alone is longer than `batch_size`: it is then cut into pieces of `batch_size`
    (its utterances near a cut see less context; MELD's longest dialogue has 24 utterances, under the default
    batch of 32).
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for group in groups:
        pieces = [list(group[i : i + batch_size]) for i in range(0, len(group), batch_size)]
        for piece in pieces:
            if current and len(current) + len(piece) > batch_size:
                batches.append(current)
                current = []
            current = current + piece
    if current:
        batches.append(current)
    return batches


def place_samples(samples: list[dict[str, Any]], dialogue: Hashable, speakers: Sequence[str | None]) -> None:
    """Mark `samples`, in order, as the turns of one dialogue (what `context_keys` reads)."""
    for position, (sample, speaker) in enumerate(zip(samples, speakers, strict=True)):
        sample["dialogue"], sample["position"], sample["speaker"] = dialogue, position, speaker


def context_keys(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """`dialogue`, `position` and `speaker` `[B]` for a batch whose samples were placed in dialogues.

    Dialogue and speaker names become small integers that only need to be equal where the names are; a row
    with no known speaker gets a negative number, which never counts as "the same speaker". Returns nothing
    when the samples carry no placement (every row is then scored alone).
    """
    if not samples or any("dialogue" not in s for s in samples):
        return {}
    dialogues: dict[Hashable, int] = {}
    dialogue = [dialogues.setdefault(s["dialogue"], len(dialogues)) for s in samples]
    # Speakers are only ever compared within a dialogue, so one numbering for the batch is enough.
    return {
        "dialogue": torch.tensor(dialogue),
        "position": torch.tensor([int(s["position"]) for s in samples]),
        "speaker": torch.tensor(speaker_ids([s.get("speaker") for s in samples])),
    }


def eval_batches(rows: Sequence[ManifestRow], batch_size: int, context: bool) -> list[list[int]]:
    """Batches to score `rows` in: whole dialogues with context, plain slices of at least 64 rows without.

    Scoring batches are at least 64 rows (a forward without gradients affords it); with context each batch
    holds whole dialogues, so every utterance sees its full window.
    """
    size = max(batch_size, 64)
    if context:
        return pack_dialogues(dialogue_groups(rows), size)
    return [list(range(i, min(i + size, len(rows)))) for i in range(0, len(rows), size)]


def speaker_ids(names: Sequence[str | None]) -> list[int]:
    """Equal small integers for equal speaker names (case and spaces ignored); -1 where none is known."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        key = name.strip().casefold() if isinstance(name, str) else ""
        out.append(seen.setdefault(key, len(seen)) if key else -1)
    return out
