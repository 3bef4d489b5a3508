from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def checks(result) -> dict[str, dict]:  # noqa: ANN001
    return {check["name"]: check for check in json.loads(result.stdout)["checks"]}


def test_ffmpeg_on_the_path_is_the_one_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio_ffmpeg

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    found = checks(runner.invoke(app, ["doctor", "--json"]))["ffmpeg"]
    assert found["status"] == "ok" and found["detail"] == f"{bin_dir / 'ffmpeg'} (on PATH)"


def test_without_ffmpeg_on_the_path_the_wheel_s_binary_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(app, ["doctor", "--for", "prepare", "--json"])
    assert result.exit_code == 0, result.output
    found = checks(result)["ffmpeg"]
    assert found["status"] == "ok" and "no ffmpeg on PATH: imageio-ffmpeg's" in found["detail"]


def test_no_ffmpeg_at_all_fails_the_commands_that_need_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # the wheel is not installed
    result = runner.invoke(app, ["doctor", "--for", "prepare"])
    assert result.exit_code == 1
    assert "Missing for prepare: ffmpeg: none on PATH, no imageio-ffmpeg: apt install ffmpeg" in result.stderr
    remote = runner.invoke(app, ["doctor", "--for", "remote", "--json"])
    assert "ffmpeg" not in json.loads(remote.stdout)["missing_for"]  # a SageMaker job runs FFmpeg, not this machine


def test_aws_is_described_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID1234")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = runner.invoke(app, ["doctor", "--for", "remote", "--json"])
    assert result.exit_code == 0, result.output
    assert checks(result)["aws"]["detail"] == "region eu-west-1, credentials from env"
    assert "very-secret-value" not in result.output and "AKIAEXAMPLEKEYID1234" not in result.output


def test_an_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["doctor", "--for", "serve"])
    assert result.exit_code == 2 and "prepare, train" in result.output


def test_without_weights_in_the_caches_training_is_not_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests run with HF_HUB_OFFLINE=1 (conftest): weights that are not cached cannot come from anywhere.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MELDCTL_MODEL__TEXT_MODEL", "meldctl-test/never-cached")
    result = runner.invoke(app, ["doctor", "--for", "train", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["missing_for"] == ["text weights", "video weights"]
    found = checks(result)
    assert "meldctl weights fetch" in found["text weights"]["detail"]
    assert str(tmp_path / "torch") in found["video weights"]["detail"]
    monkeypatch.setenv("MELDCTL_MODEL__MODALITIES", "audio")  # an audio-only model needs neither
    assert runner.invoke(app, ["doctor", "--for", "train"]).exit_code == 0


# With weights: tests/cli/test_weights.py fetches them into a temporary cache, then runs doctor there.
