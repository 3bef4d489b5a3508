"""The per-split manifest: `DATA_DIR/manifest/{split}.jsonl`, one JSON object per utterance.

`prepare` writes it; `train`, `eval` and the cache read it. Paths inside are relative to the data folder.
"""

from __future__ import annotations

import json
import types
import typing
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from meldctl.errors import DataError
from meldctl.io import write_text_atomic
from meldctl.labels import EMOTIONS, SENTIMENTS

SPLITS: tuple[str, ...] = ("train", "dev", "test")
Status = Literal["ok", "missing", "corrupt", "no_audio", "too_long"]
STATUSES: tuple[str, ...] = ("ok", "missing", "corrupt", "no_audio", "too_long")


@dataclass(frozen=True)
class ManifestRow:
    """One utterance of one split."""

    split: str
    dialogue_id: int
    utterance_id: int
    text: str
    speaker: str
    emotion: str
    sentiment: str
    clip: str | None  # relative to the data folder
    audio: str | None  # relative to the data folder
    duration_s: float | None
    status: Status
    error: str | None = None
    season: int | None = None
    episode: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    note: str | None = None  # a remark that does not change the status (e.g. a zero-length CSV span)

    @property
    def key(self) -> str:
        """Unique within a split; IDs restart at 0 in every split."""
        return f"dia{self.dialogue_id}_utt{self.utterance_id}"


def manifest_path(data_dir: Path, split: str) -> Path:
    return Path(data_dir) / "manifest" / f"{split}.jsonl"


def write_manifest(data_dir: Path, split: str, rows: list[ManifestRow]) -> Path:
    """Write a split's manifest atomically."""
    path = manifest_path(data_dir, split)
    write_text_atomic(path, "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows))
    return path


def read_manifest(data_dir: Path, split: str) -> list[ManifestRow]:
    """Read a split's manifest.

    Raises:
        DataError: the manifest is missing (prepare has not run) or a line is malformed.
    """
    path = manifest_path(data_dir, split)
    if not path.is_file():
        raise DataError(
            f"no manifest for split {split!r} at {path}",
            hint=f"run: meldctl prepare --data-dir {data_dir} (or --source sample for the embedded sample)",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})", hint="rerun meldctl prepare") from None
    rows = []
    # Split on "\n" only: JSON escapes it inside strings, but not the other line breaks that str.splitlines
    # knows (U+2028 in an utterance's text would cut its line in two).
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(parse_row(json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise DataError(f"{path}:{number}: malformed manifest line ({exc})", hint="rerun meldctl prepare") from None
    return rows


def parse_row(value: Any) -> ManifestRow:
    """A manifest row from one decoded JSON line, every field of the type `ManifestRow` declares.

    Raises:
        TypeError: not an object, an unknown or missing field, or a value of the wrong type.
        ValueError: an unknown status, emotion or sentiment.
    """
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, not {type(value).__name__}")
    row = ManifestRow(**value)
    for name, hint in _FIELD_TYPES.items():
        if not _has_type(getattr(row, name), hint):
            raise TypeError(f"field {name} holds {type(getattr(row, name)).__name__}, expected {hint}")
    for name, allowed in (("emotion", EMOTIONS), ("sentiment", SENTIMENTS)):
        if getattr(row, name) not in allowed:
            raise ValueError(f"unknown {name} {getattr(row, name)!r}")
    return row


_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(ManifestRow)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (str, int, float, None, their unions, a Literal)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # JSON true/false is never a number here
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def count_statuses(rows: list[ManifestRow]) -> dict[str, int]:
    """`{status: n}` with every status present, zeros included."""
    counts = Counter(row.status for row in rows)
    return {status: counts.get(status, 0) for status in STATUSES}
