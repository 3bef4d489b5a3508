from __future__ import annotations

from pathlib import Path

import pytest
from meld_fixtures import csv_text, write_csv

from meldctl.data.meld import (
    COLUMNS,
    find_layout,
    parse_clip_name,
    parse_labels,
    parse_timestamp,
    read_labels,
    repair_text,
)
from meldctl.errors import DataError
from meldctl.labels import EMOTIONS
from meldctl.prepare import sample_dir


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0:13:40,766", 820.766), ("00:16:16,059", 976.059), ("1:00:00,5", 3600.5), ("00:00:01.250", 1.25)],
)
def test_timestamps_parse_one_and_two_digit_hours(text: str, seconds: float) -> None:
    assert parse_timestamp(text) == pytest.approx(seconds)


def test_bad_timestamp_names_file_and_line() -> None:
    text = csv_text([(0, 0, "Hi.", "joy", "positive", "0:00:01,000", "later")])
    with pytest.raises(DataError, match=r"x\.csv:2: .*timestamp"):
        parse_labels(text, "x.csv")


def test_cp1252_csv_is_read_and_repaired(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "train_sent_emo.csv", [(0, 0, "You’re done… — ok", "joy", "positive")], "cp1252")
    assert b"\x92" in path.read_bytes()
    assert read_labels(path)[0].text == "You’re done… — ok"


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("you\x92re", "you’re"),  # the archive's cp1252 bytes decoded as Latin-1
        ("it\x85 \x93no\x94", "it… “no”"),
        ("youâ€™re", "you’re"),  # UTF-8 read as cp1252
        ("café naïve", "café naïve"),  # clean text is kept
    ],
)
def test_mojibake_is_repaired(broken: str, fixed: str) -> None:
    assert repair_text(broken) == fixed


def test_duplicate_utterance_names_file_and_line() -> None:
    text = csv_text([(0, 0, "a", "joy", "positive"), (0, 1, "b", "joy", "positive"), (0, 0, "c", "joy", "positive")])
    with pytest.raises(DataError, match=r"dev\.csv:4: duplicate utterance dia0_utt0 \(first at line 2\)"):
        parse_labels(text, "dev.csv")


@pytest.mark.parametrize(
    ("emotion", "sentiment", "word"), [("happy", "positive", "emotion"), ("joy", "meh", "sentiment")]
)
def test_unknown_label_names_file_and_line(emotion: str, sentiment: str, word: str) -> None:
    text = csv_text([(0, 0, "a", "joy", "positive"), (0, 1, "b", emotion, sentiment)])
    with pytest.raises(DataError, match=rf"t\.csv:3: unknown {word}"):
        parse_labels(text, "t.csv")


def test_labels_are_normalised_and_zero_length_spans_flagged() -> None:
    rows = parse_labels(csv_text([(3, 1, " Hi. ", "Joy", "Positive", "0:00:02,000", "0:00:02,000")]), "t.csv")
    assert (rows[0].key, rows[0].text, rows[0].emotion, rows[0].sentiment) == ("dia3_utt1", "Hi.", "joy", "positive")
    assert rows[0].zero_length and rows[0].start_s == 2.0


def test_clip_names() -> None:
    assert parse_clip_name("dia3_utt12.mp4") == "dia3_utt12"
    assert parse_clip_name("final_videos_testdia101_utt0.mp4") is None
    assert parse_clip_name("._dia3_utt1.mp4") is None


def _csvs(folder: Path) -> None:
    for split in ("train", "dev", "test"):
        write_csv(folder / f"{split}_sent_emo.csv", [(0, 0, "Hi.", "joy", "positive")])


@pytest.mark.parametrize("nested_train", [False, True])
def test_layout_accepts_both_train_folders_and_spaces(tmp_path: Path, nested_train: bool) -> None:
    root = tmp_path / "my MELD copy"
    _csvs(root)
    train = root / "train" / "train_splits" if nested_train else root / "train_splits"
    train.mkdir(parents=True)
    (root / "dev_splits_complete").mkdir()
    layout = find_layout(root, ["train", "dev", "test"])
    assert layout.clip_dirs == {"train": train, "dev": root / "dev_splits_complete", "test": None}
    assert layout.csvs["test"] == root / "test_sent_emo.csv"


def test_layout_looks_one_folder_down(tmp_path: Path) -> None:
    _csvs(tmp_path / "MELD.Raw")
    assert find_layout(tmp_path, ["dev"]).root == tmp_path / "MELD.Raw"


def test_layout_without_csvs_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MELD label CSVs") as info:
        find_layout(tmp_path, ["train"])
    assert "--source sample" in (info.value.hint or "")


def test_embedded_sample_has_every_emotion_in_train() -> None:
    train = read_labels(sample_dir() / "train_sent_emo.csv")
    assert {row.emotion for row in train} == set(EMOTIONS)
    layout = find_layout(sample_dir(), ["train", "dev", "test"])
    for split, folder in layout.clip_dirs.items():
        keys = {row.key for row in read_labels(layout.csvs[split])}
        assert folder is not None and {p.stem for p in folder.glob("*.mp4")} == keys
    assert sum(p.stat().st_size for p in sample_dir().rglob("*") if p.is_file()) < 5_000_000


def test_a_field_over_the_csv_limit_is_one_error() -> None:
    text = ",".join(COLUMNS) + '\r\n"' + "x" * 200_000 + '",Ross,joy,positive,0,0,1,1,,\r\n'
    with pytest.raises(DataError, match=r"huge.csv:\d+: field larger than field limit"):
        parse_labels(text, "huge.csv")
