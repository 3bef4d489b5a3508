from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def _clips(trained_run: Path) -> list[Path]:
    return sorted((trained_run.parent / "data" / "clips" / "test").glob("*.mp4"))[:2]


def _check(prediction: dict) -> None:
    assert list(prediction["emotion"]) == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    assert list(prediction["sentiment"]) == ["neutral", "positive", "negative"]
    assert math.isclose(sum(prediction["emotion"].values()), 1.0, abs_tol=1e-5)
    assert math.isclose(sum(prediction["sentiment"].values()), 1.0, abs_tol=1e-5)
    assert prediction["top_emotion"] == max(prediction["emotion"], key=prediction["emotion"].get)


def test_predict_one_clip_json(trained_run: Path) -> None:
    clip = _clips(trained_run)[0]
    result = runner.invoke(
        app, ["predict", str(clip), "--text", "Oh my God!", "--ckpt", str(trained_run / "best.pt"), "--json"]
    )
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout)
    _check(prediction)
    assert prediction["clip"] == str(clip) and prediction["text"] == "Oh my God!"


def test_predict_matches_the_training_preprocessing(trained_run: Path) -> None:
    """predict on a clip gives what the model gives on the dataset's sample of the same utterance."""
    from meldctl.data.dataset import load_media
    from meldctl.data.manifest import read_manifest
    from meldctl.inference import Predictor

    predictor = Predictor.from_path(trained_run / "best.pt", "cpu")
    data_dir = trained_run.parent / "data"
    row = read_manifest(data_dir, "test")[0]
    sample = predictor.prepare(data_dir / row.clip, row.text).sample
    media = load_media(row, data_dir, ("video", "audio"), predictor.preprocess)
    assert torch.equal(sample["video"], media["video"])
    # Audio: predict reads the clip through the same FFmpeg command that prepare wrote the WAV with.
    assert torch.equal(sample["audio"], media["audio"])


def test_predict_many_from_csv_and_bad_clips_do_not_stop_good_ones(trained_run: Path, tmp_path: Path) -> None:
    good = _clips(trained_run)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    notmedia = tmp_path / "notes.mp4"
    notmedia.write_text("hello")
    silent = tmp_path / "silent.mp4"
    import subprocess

    from meldctl.media.ffmpeg import ffmpeg_exe

    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(good[0]), "-an", "-c:v", "copy", str(silent)], check=True
    )
    table = tmp_path / "batch.csv"
    table.write_text(
        "clip,text\n"
        f"{good[0]},Hi there\n{good[1]},What?\n{tmp_path / 'nope.mp4'},x\n{empty},x\n{notmedia},x\n{silent},x\n"
    )
    result = runner.invoke(app, ["predict", "--texts", str(table), "--ckpt", str(trained_run / "best.pt"), "--json"])
    assert result.exit_code == 1
    predictions = json.loads(result.stdout)
    assert [p["clip"] for p in predictions] == [str(good[0]), str(good[1])]
    for p in predictions:
        _check(p)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 4
    assert any("does not exist" in e for e in errors) and any("empty" in e for e in errors)
    assert any("no audio stream" in e for e in errors)
    assert "Traceback" not in result.output


def test_predict_text_problems(trained_run: Path) -> None:
    clip = str(_clips(trained_run)[0])
    ckpt = str(trained_run / "best.pt")
    result = runner.invoke(app, ["predict", clip, "--text", "   ", "--ckpt", ckpt])
    assert result.exit_code == 1 and "empty text" in result.output
    long_text = " ".join(["really"] * 400)
    result = runner.invoke(app, ["predict", clip, "--text", long_text, "--ckpt", ckpt, "--json"])
    assert result.exit_code == 0
    assert "truncated" in result.stderr
    result = runner.invoke(app, ["predict", "--text", "hello", "--ckpt", ckpt])
    assert result.exit_code == 1 and "give a clip" in result.output


def test_predict_refuses_bad_checkpoints(trained_run: Path, tmp_path: Path) -> None:
    clip = str(_clips(trained_run)[0])
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint")
    result = runner.invoke(app, ["predict", clip, "--text", "hi", "--ckpt", str(notes)])
    assert result.exit_code == 1 and "not a meldctl checkpoint" in result.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    result = runner.invoke(app, ["predict", clip, "--text", "hi", "--ckpt", str(foreign)])
    assert result.exit_code == 1 and "not a meldctl checkpoint" in result.output


def test_predict_finds_the_newest_run(trained_run: Path, tmp_path: Path) -> None:
    older, newer = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    for folder in (older, newer):
        folder.mkdir(parents=True)
        shutil.copy(trained_run / "best.pt", folder / "best.pt")
    past = time.time() - 3600
    os.utime(older / "best.pt", (past, past))
    result = runner.invoke(app, ["predict", str(_clips(trained_run)[0]), "--text", "hi"])
    assert result.exit_code == 0, result.output
    assert str(Path("runs") / "b" / "best.pt") in result.stderr


@pytest.fixture(scope="module")
def text_only_ckpt(sample_data: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import train_small

    return train_small(sample_data, tiny_bert, tmp_path_factory.mktemp("textonly"), modalities="text") / "best.pt"


def test_text_only_checkpoint_needs_no_clip(text_only_ckpt: Path) -> None:
    result = runner.invoke(app, ["predict", "--text", "Oh my God!", "--ckpt", str(text_only_ckpt), "--json"])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout)
    _check(prediction)
    assert prediction["clip"] is None
