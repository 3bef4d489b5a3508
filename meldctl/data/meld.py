"""MELD on disk: where the label CSVs and clip folders are, and what the CSVs say.

Everything here is pure or read-only: it parses and looks, never writes.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from meldctl.errors import DataError
from meldctl.labels import EMOTIONS, SENTIMENTS

CSV_NAMES: dict[str, str] = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
LABELS_COMMIT = "2d2011b409d3ca2d7e94460cd007d434b1d0a102"
"""The commit of declare-lab/MELD whose `data/MELD/` label CSVs `prepare --source labels` downloads."""
LABEL_SHA256: dict[str, str] = {
    "train": "d2fa2d6529cf03cac2989efec05c9b27d8fd2f4c8fc5974c7ae88aa537fa02db",
    "dev": "2e89c6f8aa182d6f62f8c6331aece905ac7273ca4999660bfb5213e1d0370c1c",
    "test": "8d37103938f7067600839fe29d5a114a6cd1bcdafb75bec101e06464c5006888",
}
"""The SHA-256 of each split's label CSV at `LABELS_COMMIT` (UTF-8, CRLF)."""
CLIP_FOLDERS: dict[str, str] = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
COLUMNS: tuple[str, ...] = (
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)
_TIMESTAMP = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})$")
_CLIP_NAME = re.compile(r"^dia(\d+)_utt(\d+)\.mp4$")
# A run of non-ASCII characters: the unit in which UTF-8-read-as-cp1252 mojibake (`â€™`) is repaired.
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True)
class LabelRow:
    """One row of a MELD label CSV."""

    dialogue_id: int
    utterance_id: int
    text: str
    speaker: str
    emotion: str
    sentiment: str
    season: int | None
    episode: int | None
    start_s: float | None
    end_s: float | None
    line: int  # line of the CSV the row ends on, for error messages

    @property
    def key(self) -> str:
        return clip_key(self.dialogue_id, self.utterance_id)

    @property
    def zero_length(self) -> bool:
        """True for a span with StartTime == EndTime (test dia155_utt3 in MELD)."""
        return self.start_s is not None and self.start_s == self.end_s


@dataclass(frozen=True)
class MeldLayout:
    """Where one MELD copy keeps its label CSVs and clip folders (None: text only)."""

    root: Path
    csvs: dict[str, Path]
    clip_dirs: dict[str, Path | None]


def clip_key(dialogue_id: int, utterance_id: int) -> str:
    """`dia{D}_utt{U}`: unique within a split."""
    return f"dia{dialogue_id}_utt{utterance_id}"


def parse_clip_name(name: str) -> str | None:
    """The utterance key of a clip file name (`dia3_utt1.mp4` -> `dia3_utt1`), or None for other names."""
    match = _CLIP_NAME.match(name)
    return clip_key(int(match[1]), int(match[2])) if match else None


def parse_timestamp(text: str) -> float:
    """`hh:mm:ss,mmm` (one-digit hours too) to seconds.

    Raises:
        ValueError: not a timestamp.
    """
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"not a hh:mm:ss,mmm timestamp: {text!r}")
    hours, minutes, seconds, millis = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _c1_to_cp1252(char: str) -> str:
    try:
        return bytes([ord(char)]).decode("cp1252")
    except UnicodeDecodeError:
        return char


def _undo_double_encoding(run: str) -> str:
    try:
        return run.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return run


def repair_text(text: str) -> str:
    """Undo the two encoding accidents found in MELD's CSV versions.

    The archive's CSVs hold cp1252 bytes decoded as Latin-1 (U+0092 where ’ was meant); UTF-8 files read
    as cp1252 show `â€™`. Both are mapped back to the intended characters; clean text is returned as is.
    """
    text = "".join(_c1_to_cp1252(c) if "\x80" <= c <= "\x9f" else c for c in text)
    return _NON_ASCII_RUN.sub(lambda m: _undo_double_encoding(m[0]), text)


def decode_csv(data: bytes) -> str:
    """CSV bytes to text: UTF-8 (a BOM allowed), else cp1252.

    cp1252 leaves five bytes undefined; decoding as Latin-1 and mapping only U+0080..U+009F through cp1252
    keeps those five as their code points instead of failing on them.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "".join(_c1_to_cp1252(c) if "\x80" <= c <= "\x9f" else c for c in data.decode("latin-1"))


def _optional_int(value: str | None) -> int | None:
    return int(value) if value and value.strip() else None


def _label_row(row: dict[str, str], line: int) -> LabelRow:
    """One CSV row to a LabelRow; raises ValueError with the reason for a bad field."""
    emotion, sentiment = row["Emotion"].strip().lower(), row["Sentiment"].strip().lower()
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {row['Emotion']!r} (expected one of {', '.join(EMOTIONS)})")
    if sentiment not in SENTIMENTS:
        raise ValueError(f"unknown sentiment {row['Sentiment']!r} (expected one of {', '.join(SENTIMENTS)})")
    start, end = (row.get(name) or "" for name in ("StartTime", "EndTime"))
    return LabelRow(
        dialogue_id=int(row["Dialogue_ID"]),
        utterance_id=int(row["Utterance_ID"]),
        text=repair_text(row["Utterance"] or "").strip(),
        speaker=repair_text(row["Speaker"] or "").strip(),
        emotion=emotion,
        sentiment=sentiment,
        season=_optional_int(row.get("Season")),
        episode=_optional_int(row.get("Episode")),
        start_s=parse_timestamp(start) if start.strip() else None,
        end_s=parse_timestamp(end) if end.strip() else None,
        line=line,
    )


def parse_labels(text: str, source: str) -> list[LabelRow]:
    """Parse a MELD label CSV's text.

    Args:
        text: The decoded CSV.
        source: The file name used in error messages.

    Raises:
        DataError: a missing column, a bad field, an unknown label or a duplicate utterance, naming
            `source` and the line.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = reader.fieldnames or []
    except csv.Error as exc:
        raise DataError(f"{source}: not a MELD label CSV ({exc})", hint="fix or replace the label file") from None
    missing = [name for name in COLUMNS if name not in columns]
    if missing:
        raise DataError(f"{source}: not a MELD label CSV (missing columns {', '.join(missing)})")
    rows: list[LabelRow] = []
    first_line: dict[str, int] = {}
    while True:
        try:
            row = next(reader, None)
        except csv.Error as exc:  # a malformed quote, a field over the csv module's size limit
            raise DataError(f"{source}:{reader.line_num}: {exc}", hint="fix or replace the label file") from None
        if row is None:
            break
        line = reader.line_num
        try:
            utterance = _label_row(row, line)
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"{source}:{line}: {exc}", hint="fix or replace the label file") from None
        if utterance.key in first_line:
            raise DataError(
                f"{source}:{line}: duplicate utterance {utterance.key} (first at line {first_line[utterance.key]})",
                hint="each (Dialogue_ID, Utterance_ID) must appear once per split",
            )
        first_line[utterance.key] = line
        rows.append(utterance)
    return rows


def read_labels(path: Path) -> list[LabelRow]:
    """Read and parse one MELD label CSV (see `parse_labels`).

    Raises:
        DataError: the file cannot be read or is malformed.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return parse_labels(decode_csv(data), str(path))


def _find_base(root: Path) -> Path:
    """The folder holding the CSVs: `root` itself, or one folder below (the archive's `MELD.Raw/`)."""
    if any((root / name).is_file() for name in CSV_NAMES.values()):
        return root
    below = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in below:
        if any((folder / name).is_file() for name in CSV_NAMES.values()):
            return folder
    raise DataError(
        f"no MELD label CSVs ({', '.join(CSV_NAMES.values())}) in {root} or a folder directly below it",
        hint="point --source at the extracted MELD.Raw folder, a MELD.Raw.tar.gz, or use --source sample",
    )


def _find_clip_dir(base: Path, split: str) -> Path | None:
    """A split's clip folder in either layout: `train_splits/` or `train/train_splits/`."""
    for candidate in (base / CLIP_FOLDERS[split], base / split / CLIP_FOLDERS[split]):
        if candidate.is_dir():
            return candidate
    return None


def find_layout(root: Path, splits: list[str] | tuple[str, ...]) -> MeldLayout:
    """Locate the label CSVs and clip folders of `splits` under `root`.

    A split without a clip folder is text only (its clip dir is None).

    Raises:
        DataError: `root` is not a folder, or a split's CSV is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    base = _find_base(root)
    csvs: dict[str, Path] = {}
    for split in splits:
        found = [p for p in (base / CSV_NAMES[split], base / split / CSV_NAMES[split]) if p.is_file()]
        if not found:
            raise DataError(f"no {CSV_NAMES[split]} in {base}", hint="prepare only the splits present with --splits")
        csvs[split] = found[0]
    return MeldLayout(root=base, csvs=csvs, clip_dirs={split: _find_clip_dir(base, split) for split in splits})
