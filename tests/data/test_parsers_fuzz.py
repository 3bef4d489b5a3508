"""Property tests of the label CSV and manifest parsers: any input gives rows or one `MeldError`, never a
traceback, and what a writer writes reads back the same."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, fields
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meldctl.data.manifest import STATUSES, ManifestRow, manifest_path, read_manifest, write_manifest
from meldctl.data.meld import COLUMNS, decode_csv, parse_labels, repair_text
from meldctl.errors import MeldError
from meldctl.labels import EMOTION_INDEX, EMOTIONS, SENTIMENT_INDEX, SENTIMENTS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HEADER = ",".join(COLUMNS)
# Text as a CSV file may hold it: anything but NUL and lone surrogates (which no file can encode as UTF-8).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def _parses_or_refuses(data: bytes) -> None:
    try:
        rows = parse_labels(decode_csv(data), "fuzz.csv")
    except MeldError:
        return
    assert all(row.emotion in EMOTIONS and row.sentiment in SENTIMENTS for row in rows)


@FUZZ
@given(st.binary(max_size=2000))
def test_label_csv_of_any_bytes(data: bytes) -> None:
    _parses_or_refuses(data)
    _parses_or_refuses(HEADER.encode() + b"\r\n" + data)  # past the header check, into the rows


@FUZZ
@given(st.lists(st.lists(TEXT, max_size=12), max_size=8))
def test_label_csv_of_any_rows(rows: list[list[str]]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    _parses_or_refuses(out.getvalue().encode("utf-8"))


LABEL_ROWS = st.lists(
    st.tuples(
        TEXT,
        TEXT,
        st.sampled_from(EMOTIONS),
        st.sampled_from(SENTIMENTS),
        st.integers(0, 10**6),
        st.integers(1, 10),
        st.integers(0, 3_000_000),
    ),  # fmt: skip
    max_size=6,
    unique_by=lambda row: row[4],
)


@FUZZ
@given(LABEL_ROWS)
def test_label_csv_round_trip(rows: list[tuple]) -> None:
    """Rows written by the csv module as MELD writes them (CRLF, quoted timestamps) read back the same."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for text, speaker, emotion, sentiment, dialogue, season, millis in rows:
        stamp = f"{millis // 3_600_000}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"
        writer.writerow([text, speaker, emotion.title(), sentiment, dialogue, 0, season, 3, stamp, stamp])
    parsed = parse_labels(decode_csv(out.getvalue().encode("utf-8")), "round-trip.csv")
    assert len(parsed) == len(rows)
    for row, (text, speaker, emotion, sentiment, dialogue, season, millis) in zip(parsed, rows, strict=True):
        assert (row.text, row.speaker) == (repair_text(text).strip(), repair_text(speaker).strip())
        assert (row.emotion, row.sentiment, row.dialogue_id, row.season) == (emotion, sentiment, dialogue, season)
        assert row.start_s == row.end_s and math.isclose(row.start_s, millis / 1000)


OPTIONAL_TEXT = st.none() | TEXT
SECONDS = st.none() | st.floats(0, 1e6, allow_nan=False)
MANIFEST_ROWS = st.builds(
    ManifestRow,
    split=st.sampled_from(["train", "dev", "test"]),
    dialogue_id=st.integers(-(2**40), 2**40),
    utterance_id=st.integers(0, 10**6),
    text=TEXT,
    speaker=TEXT,
    emotion=st.sampled_from(EMOTIONS),
    sentiment=st.sampled_from(SENTIMENTS),
    clip=OPTIONAL_TEXT,
    audio=OPTIONAL_TEXT,
    duration_s=SECONDS,
    status=st.sampled_from(STATUSES),
    error=OPTIONAL_TEXT,
    season=st.none() | st.integers(0, 20),
    episode=st.none() | st.integers(0, 30),
    start_s=SECONDS,
    end_s=SECONDS,
    note=OPTIONAL_TEXT,
)


@FUZZ
@given(st.lists(MANIFEST_ROWS, max_size=5))
def test_manifest_round_trip(tmp_path: Path, rows: list[ManifestRow]) -> None:
    write_manifest(tmp_path, "dev", rows)
    assert read_manifest(tmp_path, "dev") == rows


@FUZZ
@given(st.binary(max_size=1000))
def test_manifest_of_any_bytes(tmp_path: Path, content: bytes) -> None:
    path = manifest_path(tmp_path, "dev")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    try:
        read_manifest(tmp_path, "dev")
    except MeldError:
        pass


FIELDS = st.sampled_from([field.name for field in fields(ManifestRow)])
ODD_VALUES = st.sampled_from([[1], {"a": 1}, True, "?", "joy", 1.5, None, -1])


@FUZZ
@given(MANIFEST_ROWS, FIELDS, ODD_VALUES)
def test_a_damaged_field_is_refused_or_usable(tmp_path: Path, row: ManifestRow, field: str, value: object) -> None:
    """What `read_manifest` returns is what training uses: typed values and known labels."""
    damaged = {**asdict(row), field: value}
    path = manifest_path(tmp_path, "dev")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(damaged) + "\n", encoding="utf-8")
    try:
        [read] = read_manifest(tmp_path, "dev")
    except MeldError:
        return
    assert EMOTION_INDEX[read.emotion] >= 0 and SENTIMENT_INDEX[read.sentiment] >= 0 and read.status in STATUSES
    assert isinstance(read.text.strip(), str) and isinstance(read.dialogue_id + read.utterance_id, int)
    assert all(isinstance(getattr(read, name), str | None) for name in ("clip", "audio", "error", "note"))
    assert all(v is None or isinstance(v, int | float) and not isinstance(v, bool)
               for v in (read.duration_s, read.start_s, read.end_s, read.season, read.episode))  # fmt: skip
