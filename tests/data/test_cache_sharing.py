"""The feature cache under concurrency: processes that share one data folder build one cache, together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_prepared


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _run_together(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd)
        for c in commands
    ]
    outputs = [p.communicate(timeout=500) for p in procs]
    return [
        subprocess.CompletedProcess(c, p.returncode, o, e)
        for c, p, (o, e) in zip(commands, procs, outputs, strict=True)
    ]


def _kinds(data: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in (data / "cache").iterdir() if p.is_dir())


def test_two_evals_at_once_on_a_fresh_folder(trained_run: Path, tmp_path: Path) -> None:
    data = copy_prepared(trained_run.parent / "data", tmp_path / "data")
    evals = [
        [sys.executable, "-m", "meldctl", "eval", str(trained_run / "best.pt"), "--data-dir", str(data),
         "--split", "dev", "--workers", "0", "--json", "--out", str(tmp_path / f"out{i}")]
        for i in range(2)
    ]  # fmt: skip
    results = _run_together(evals, tmp_path)
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    reports = [json.loads(r.stdout) for r in results]
    assert reports[0]["emotion"] == reports[1]["emotion"] and reports[0]["n"] == 14
    assert _kinds(data) == ["audio", "text_features", "video_features"]  # one cache of each, not two
    for folder in (data / "cache").iterdir():
        assert not list(folder.glob("*.partial.npy")) and not list(folder.glob(".*.tmp"))


def test_two_trains_at_once_on_a_fresh_folder(
    sample_data: Path, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy_prepared(sample_data, tmp_path / "data")
    trains = [
        [sys.executable, "-m", "meldctl", "train", "--data-dir", str(data), "--run-dir", str(tmp_path / f"run{i}"),
         "--text-model", str(tiny_bert), "--video-weights", "none", "--workers", "0", "--batch-size", "8",
         "--epochs", "1", "--json"]
        for i in range(2)
    ]  # fmt: skip
    for key, value in {"NUM_FRAMES": "2", "RESIZE_SIZE": "36,48", "CROP_SIZE": "32", "AUDIO_SECONDS": "1"}.items():
        monkeypatch.setenv(f"MELDCTL_MODEL__{key}", value)
    results = _run_together(trains, tmp_path)
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["stopped"] == "completed"
    assert _kinds(data) == ["audio", "text_features", "video_features"]
