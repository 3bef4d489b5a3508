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


def test_train_cache_eval_and_predict_compute_the_same_features(trained_run: Path, tmp_path: Path) -> None:
    """One clip and text: the model inputs are bit-identical and the frozen encoders' features equal, whether
    they come from the training cache, eval's dataset or predict."""
    from helpers import copy_prepared

    from meldctl.data.dataset import Collator, DataPlan, build_datasets
    from meldctl.data.kinds import kinds_for
    from meldctl.data.manifest import read_manifest
    from meldctl.inference import Predictor
    from meldctl.model.text import tokenizer_digest

    predictor = Predictor.from_path(trained_run / "best.pt", "cpu")
    model, pre = predictor.model, predictor.preprocess
    data_dir = copy_prepared(trained_run.parent / "data", tmp_path / "data")
    rows = read_manifest(data_dir, "test")
    row = rows[0]
    digest = tokenizer_digest(predictor.loaded.tokenizer_files)

    def dataset(use_cache: bool):  # noqa: ANN202
        plan = DataPlan(data_dir, pre, predictor.loaded.tokenizer, digest, use_cache, torch.device("cpu"), 0)
        return build_datasets({"test": rows}, model, plan)[0]["test"]

    raw, cached = dataset(False), dataset(True)
    collate = Collator(kinds_for(model.config.modalities), pre, predictor.loaded.tokenizer)
    from_raw, from_cache = collate([raw[0]]), collate([cached[0]])
    prepared = predictor.prepare(data_dir / row.clip, row.text)
    from_predict = collate([prepared.sample])
    for key in ("input_ids", "attention_mask", "video", "audio", "audio_length"):
        assert torch.equal(from_raw[key], from_predict[key]), key  # the same bytes reach the model
    assert torch.equal(
        from_cache["audio"][..., : from_predict["audio"].shape[-1]], from_predict["audio"].half().float()
    )
    with torch.no_grad():
        video = model.video.features(from_predict["video"])
        text = model.text.features(from_predict["input_ids"], from_predict["attention_mask"])
    assert torch.allclose(from_cache["video_features"], video, atol=1e-5)
    assert torch.allclose(from_cache["text_features"], text, atol=1e-5)
    with torch.no_grad():
        logits_cache, logits_predict = model(from_cache), model(from_predict)
    assert torch.allclose(logits_cache["emotion"], logits_predict["emotion"], atol=1e-3)


def test_predict_many_from_csv_and_bad_clips_do_not_stop_good_ones(trained_run: Path, tmp_path: Path) -> None:
    good = _clips(trained_run)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    notmedia = tmp_path / "notes.mp4"
    notmedia.write_text("hello")
    silent = _strip(good[0], tmp_path / "silent.mp4", "-an")
    table = tmp_path / "batch.csv"
    table.write_text(
        "clip,text\n"
        f"{good[0]},Hi there\n{good[1]},What?\n{tmp_path / 'nope.mp4'},x\n{empty},x\n{notmedia},x\n{silent},x\n"
    )
    result = runner.invoke(app, ["predict", "--texts", str(table), "--ckpt", str(trained_run / "best.pt"), "--json"])
    assert result.exit_code == 1
    predictions = json.loads(result.stdout)
    assert [p["clip"] for p in predictions] == [str(good[0]), str(good[1]), str(silent)]
    for p in predictions:
        _check(p)
    assert predictions[2]["missing"] == ["audio"] and "no audio stream" in predictions[2]["warnings"][0]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3
    assert any("does not exist" in e for e in errors) and any("empty" in e for e in errors)
    assert "Traceback" not in result.output


def _strip(clip: Path, out: Path, *drop: str) -> Path:
    import subprocess

    from meldctl.media.ffmpeg import ffmpeg_exe

    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clip), *drop, "-c", "copy", str(out)], check=True
    )
    return out


def test_a_clip_missing_a_stream_is_answered_with_a_warning_or_refused_with_strict(
    trained_run: Path, tmp_path: Path
) -> None:
    clip, ckpt = _clips(trained_run)[0], str(trained_run / "best.pt")
    video_only, audio_only = _strip(clip, tmp_path / "video.mp4", "-an"), _strip(clip, tmp_path / "audio.m4a", "-vn")
    for path, missing in ((video_only, "audio"), (audio_only, "video")):
        result = runner.invoke(app, ["predict", str(path), "--text", "Oh my God!", "--ckpt", ckpt, "--json"])
        assert result.exit_code == 0, result.output
        prediction = json.loads(result.stdout)
        _check(prediction)
        assert prediction["missing"] == [missing]
        assert f"Warning: {path}: answered without {missing}" in result.stderr
        strict = runner.invoke(app, ["predict", str(path), "--text", "Oh my God!", "--ckpt", ckpt, "--strict"])
        assert strict.exit_code == 1 and "--strict" in strict.output and "Traceback" not in strict.output
        assert len([line for line in strict.output.splitlines() if line.startswith("Error:")]) == 1


def test_predict_texts_csv_in_cp1252(text_only_ckpt: Path, tmp_path: Path) -> None:
    table = tmp_path / "cp1252.csv"
    table.write_bytes("clip,text\n,Don\u2019t you \u2013 ever!\n".encode("cp1252"))
    result = runner.invoke(app, ["predict", "--texts", str(table), "--ckpt", str(text_only_ckpt), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == "Don\u2019t you \u2013 ever!"


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
    from helpers import train_small

    return train_small(sample_data, tiny_bert, tmp_path_factory.mktemp("textonly"), modalities="text") / "best.pt"


def test_text_only_checkpoint_needs_no_clip(text_only_ckpt: Path) -> None:
    result = runner.invoke(app, ["predict", "--text", "Oh my God!", "--ckpt", str(text_only_ckpt), "--json"])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout)
    _check(prediction)
    assert prediction["clip"] is None
