"""Utterances in their dialogues: grouping, batches that keep dialogues whole, and the context keys of a batch.

MELD's rows are utterances; a conversation is the rows of one `dialogue_id`, in `utterance_id` order. A model
with dialogue context (`meldctl.model.context`) needs each batch to hold whole dialogues, so that every
utterance's window is in the batch with it; these functions make such batches for training (shuffled by
dialogue), evaluation and prediction (in order), and the integer tensors that place each row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meldctl.data.manifest import ManifestRow
from meldctl.errors import DataError


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


@dataclass(frozen=True)
class DialogueLine:
    """One row of a dialogue file: an utterance, who said it, its clip (None: text only), its conversation."""

    text: str
    speaker: str | None
    clip: Path | None
    dialogue: str


_MAX_LINES = 100_000
_REQUIRED = "text"  # the one column (JSON key) a dialogue file must have


def read_dialogue_file(path: Path) -> list[DialogueLine]:
    """The rows of a JSONL or CSV dialogue file, in file order.

    Columns (CSV header or JSON keys): `text` (required), `speaker`, `clip` (a path relative to the file's
    folder), `dialogue` (rows are grouped by it; without it the whole file is one dialogue). A `.jsonl` or
    `.json` suffix, or a first character `{`, means JSON lines; anything else is read as CSV.

    Raises:
        DataError: an unreadable file, a row that is not an object, a missing or non-text `text`, no rows.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the dialogue file {path}: {exc.strerror or exc}") from None
    from meldctl.data.meld import decode_csv

    text = decode_csv(raw)
    as_json = Path(path).suffix.lower() in (".jsonl", ".json") or text.lstrip().startswith("{")
    records = _json_records(text, path) if as_json else _csv_records(text, path)
    lines = [_line(record, number, path) for number, record in records]
    if not lines:
        raise DataError(f"{path} holds no utterances", hint="one row per utterance, with a text column")
    return lines


def _json_records(text: str, path: Path) -> list[tuple[int, Any]]:
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"{path} line {number} is not JSON", hint="one JSON object per line") from None
        if len(records) > _MAX_LINES:
            raise DataError(f"{path} has more than {_MAX_LINES} utterances")
    return records


def _csv_records(text: str, path: Path) -> list[tuple[int, Any]]:
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if _REQUIRED not in header:
        raise DataError(f"{path} has no 'text' column", hint="the first row names the columns: text,speaker,clip")
    if len(rows) - 1 > _MAX_LINES:
        raise DataError(f"{path} has more than {_MAX_LINES} utterances")
    return [(number, dict(zip(header, row, strict=False))) for number, row in enumerate(rows[1:], start=2)]


def _line(record: Any, number: int, path: Path) -> DialogueLine:
    if not isinstance(record, dict):
        raise DataError(f"{path} line {number}: expected an object with a 'text' field")
    fields = {}
    for key in ("text", "speaker", "clip", "dialogue"):
        value = record.get(key)
        if value is not None and not isinstance(value, str | int):
            raise DataError(f"{path} line {number}: '{key}' must be text")
        fields[key] = str(value).strip() if value is not None else ""
    if not fields["text"]:
        raise DataError(f"{path} line {number}: no text", hint="every row needs the utterance's text")
    clip = Path(path).parent / fields["clip"] if fields["clip"] else None
    return DialogueLine(fields["text"], fields["speaker"] or None, clip, fields["dialogue"])


def group_lines(lines: Sequence[DialogueLine]) -> list[list[int]]:
    """Indices of `lines` by dialogue, each in file order; dialogues in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        groups.setdefault(line.dialogue, []).append(index)
    return list(groups.values())
