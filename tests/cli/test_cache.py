from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def test_a_cache_built_beforehand_is_simply_used_by_train(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    for key, value in {"NUM_FRAMES": "2", "RESIZE_SIZE": "36,48", "CROP_SIZE": "32", "AUDIO_SECONDS": "1"}.items():
        monkeypatch.setenv(f"MELDCTL_MODEL__{key}", value)
    model = ["--text-model", str(tiny_bert), "--video-weights", "none"]
    built = runner.invoke(app, ["cache", "build", "--data-dir", str(prepared_copy), *model, "--workers", "0", "--json"])
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert set(summary["splits"]) == {"train", "dev", "test"}
    assert summary["splits"]["train"]["video"] == {"rows": 42, "valid": 42}
    listed = json.loads(runner.invoke(app, ["cache", "list", "--data-dir", str(prepared_copy), "--json"]).stdout)
    assert sorted(entry["kind"] for entry in listed) == ["audio", "text_features", "video_features"]
    assert all(entry["complete"] == ["dev", "test", "train"] for entry in listed)
    train = runner.invoke(
        app, ["train", "--data-dir", str(prepared_copy), "--run-dir", str(tmp_path / "run"), *model, "--epochs", "1",
              "--batch-size", "8", "--workers", "0", "--json"],
    )  # fmt: skip
    assert train.exit_code == 0, train.output
    assert "caching" not in train.output  # nothing left to compute
    assert len(list((prepared_copy / "cache").iterdir())) == 3
    bad = runner.invoke(app, ["cache", "build", "--data-dir", str(prepared_copy), "--splits", "validation"])
    assert bad.exit_code == 2
