from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from helpers import tar_gz_bytes
from meld_fixtures import clip, make_defect_folder, write_csv

from meldctl import io
from meldctl.data.manifest import read_manifest
from meldctl.errors import DataError
from meldctl.prepare import PrepareEvent, prepare
from meldctl.settings import DataSettings


def _settings(source: Path | str, data_dir: Path, **extra: object) -> DataSettings:
    return DataSettings(source=str(source), data_dir=data_dir, workers=2, max_clip_seconds=2.0, **extra)


def _statuses(data_dir: Path, split: str) -> dict[str, tuple[str, str | None]]:
    return {row.key: (row.status, row.error) for row in read_manifest(data_dir, split)}


@pytest.fixture(scope="module")
def defects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_defect_folder(tmp_path_factory.mktemp("src") / "MELD copy with spaces")


def test_every_known_defect_gets_its_status(tmp_path: Path, defects: Path) -> None:
    data_dir = tmp_path / "data dir"
    events: list[PrepareEvent] = []
    summary = prepare(_settings(defects, data_dir), progress=events.append)

    train = _statuses(data_dir, "train")
    assert train["dia0_utt0"] == ("ok", None)
    assert train["dia0_utt1"][0] == "corrupt" and "decode" in train["dia0_utt1"][1]
    assert train["dia1_utt0"][0] == "too_long" and "max_clip_seconds" in train["dia1_utt0"][1]
    assert _statuses(data_dir, "dev") == {"dia0_utt0": ("ok", None), "dia0_utt1": ("missing", "clip file missing")}
    test = _statuses(data_dir, "test")
    assert test["dia0_utt0"] == ("ok", None) and test["dia155_utt3"] == ("ok", None)
    assert test["dia1_utt0"] == ("no_audio", "clip has no audio stream")

    assert summary.splits["dev"].no_csv_row == ["dia66_utt9.mp4"]
    assert sorted(summary.splits["test"].no_csv_row) == ["dia108_utt2.mp4", "final_videos_testdia101_utt0.mp4"]
    assert summary.splits["test"].zero_length == ["dia155_utt3"]
    assert summary.splits["train"].counts == {"ok": 1, "missing": 0, "corrupt": 1, "no_audio": 0, "too_long": 1}
    assert summary.extracted == 4
    assert events[-1] == PrepareEvent("clips", 3, 3, "test")


def test_manifest_rows_point_at_real_files(tmp_path: Path, defects: Path) -> None:
    prepare(_settings(defects, tmp_path))
    rows = {row.key: row for row in read_manifest(tmp_path, "test")}
    ok = rows["dia155_utt3"]
    assert ok.clip == "clips/test/dia155_utt3.mp4" and (tmp_path / ok.clip).is_file()
    info = sf.info(str(tmp_path / ok.audio))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert ok.start_s == ok.end_s and "zero-length" in ok.note
    assert ok.duration_s == pytest.approx(1.0, abs=0.15)
    assert rows["dia1_utt0"].audio is None and rows["dia1_utt0"].clip is not None
    assert (tmp_path / "clips" / "train").is_symlink()
    assert "final_videos_testdia101_utt0" not in {row.key for row in rows.values()}


def test_rerun_extracts_nothing_and_finishes_interrupted_work(tmp_path: Path, defects: Path) -> None:
    first = prepare(_settings(defects, tmp_path))
    again = prepare(_settings(defects, tmp_path))
    assert again.extracted == 0
    assert {s: x.counts for s, x in again.splits.items()} == {s: x.counts for s, x in first.splits.items()}

    # What a kill mid-extraction leaves: a missing WAV and a temporary file that must not survive.
    wav = tmp_path / "audio" / "test" / "dia0_utt0.wav"
    wav.unlink()
    stale = wav.with_name(f".dia0_utt0.wav.{dead_writer_tag()}.abc123.tmp")
    stale.write_bytes(b"half")
    live = wav.with_name(f".dia0_utt1.wav.{io._tag()}.def456.tmp")  # a write in progress in a live process
    live.write_bytes(b"busy")
    third = prepare(_settings(defects, tmp_path))
    assert third.extracted == 1 and wav.is_file() and not stale.exists()
    assert live.exists()


def dead_writer_tag() -> str:
    """The temporary-file tag of a process of this host that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{io._tag().rsplit('-', 1)[0]}-{child.pid}"


def test_a_lower_limit_turns_a_previous_ok_into_too_long(tmp_path: Path, defects: Path) -> None:
    prepare(_settings(defects, tmp_path, splits=["dev"]))
    prepare(_settings(defects, tmp_path, splits=["dev"]).model_copy(update={"max_clip_seconds": 0.5}))
    assert _statuses(tmp_path, "dev")["dia0_utt0"][0] == "too_long"


def test_text_only_source_gives_missing_rows(tmp_path: Path) -> None:
    for split in ("train", "dev", "test"):
        write_csv(tmp_path / "csvs" / f"{split}_sent_emo.csv", [(0, 0, "Hi.", "joy", "positive")])
    summary = prepare(_settings(tmp_path / "csvs", tmp_path / "data"))
    row = read_manifest(tmp_path / "data", "train")[0]
    assert (row.status, row.error, row.clip, row.audio, row.text) == ("missing", "no clip", None, None, "Hi.")
    assert summary.splits["dev"].text_only and summary.extracted == 0


def test_archive_source_is_extracted_into_the_data_folder(tmp_path: Path) -> None:
    ok = clip("ok", tmp_path / "ok.mp4").read_bytes()
    csv = write_csv(tmp_path / "x.csv", [(0, 0, "Hi.", "joy", "positive")]).read_bytes()
    train = tar_gz_bytes({"train_splits/dia0_utt0.mp4": ok})
    outer = tar_gz_bytes({"MELD.Raw/train_sent_emo.csv": csv, "MELD.Raw/train.tar.gz": train})
    (tmp_path / "MELD.Raw.tar.gz").write_bytes(outer)
    data_dir = tmp_path / "data"
    summary = prepare(_settings(tmp_path / "MELD.Raw.tar.gz", data_dir, splits=["train"]))
    assert summary.splits["train"].counts["ok"] == 1
    link = data_dir / "clips" / "train"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()  # the data folder can move
    assert link.resolve().is_relative_to(data_dir.resolve() / "raw")


def test_a_new_source_drops_the_old_clips_and_audio(tmp_path: Path, defects: Path) -> None:
    prepare(_settings(defects, tmp_path / "data", splits=["dev"]))
    assert (tmp_path / "data" / "audio" / "dev" / "dia0_utt0.wav").is_file()
    write_csv(tmp_path / "csvs" / "dev_sent_emo.csv", [(0, 0, "Okay.", "neutral", "neutral")])
    summary = prepare(_settings(tmp_path / "csvs", tmp_path / "data", splits=["dev"]))
    assert summary.splits["dev"].counts["missing"] == 1
    assert not (tmp_path / "data" / "audio" / "dev").exists() and not (tmp_path / "data" / "clips" / "dev").exists()


def test_a_clips_folder_prepare_did_not_make_is_left_alone(tmp_path: Path, defects: Path) -> None:
    mine = tmp_path / "data" / "clips" / "dev" / "keep.mp4"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"x")
    with pytest.raises(DataError, match="not made by prepare"):
        prepare(_settings(defects, tmp_path / "data", splits=["dev"]))
    assert mine.is_file()


def test_url_source_downloads_then_extracts(tmp_path: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "www"
    served.mkdir()
    csv = write_csv(tmp_path / "x.csv", [(0, 0, "Hi.", "joy", "positive")]).read_bytes()
    (served / "MELD.Raw.tar.gz").write_bytes(tar_gz_bytes({"MELD.Raw/dev_sent_emo.csv": csv}))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/MELD.Raw.tar.gz?mirror=1"
        summary = prepare(_settings(url, tmp_path / "data", splits=["dev"]))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (tmp_path / "data" / "raw" / "MELD.Raw.tar.gz").is_file()
    assert summary.splits["dev"].counts["missing"] == 1 and summary.splits["dev"].text_only
