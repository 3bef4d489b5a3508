from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meldctl import __version__
from meldctl.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_help_and_config_show_do_not_import_torch() -> None:
    code = (
        "import sys; from meldctl.cli import app; from typer.testing import CliRunner;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['analyze', '--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['config', 'show']); assert r.exit_code == 0, r.output;"
        "heavy = ('torch', 'av', 'faster_whisper', 'ctranslate2', 'silero_vad', 'matplotlib', 'pysubs2');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_of_every_command_imports_no_heavy_package() -> None:
    """`--help` stays fast: no torch, no web server, no AWS SDK until a command runs."""
    helps = [["--help"], ["serve", "--help"], ["endpoint", "--help"], ["endpoint", "deploy", "--help"],
             ["endpoint", "invoke", "--help"], ["predict", "--help"]]  # fmt: skip
    code = (
        "import sys; from meldctl.cli import app; from typer.testing import CliRunner\n"
        f"for args in {helps!r}:\n"
        "    r = CliRunner().invoke(app, args); assert r.exit_code == 0, (args, r.output)\n"
        "heavy = ('torch', 'fastapi', 'uvicorn', 'starlette', 'boto3', 'botocore', 'sagemaker', 'transformers')\n"
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_config_show_json_follows_toml_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "meldctl.toml").write_text("[train]\nbatch_size = 8\n")
    result = runner.invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train"]["batch_size"] == 8
    monkeypatch.setenv("MELDCTL_TRAIN__BATCH_SIZE", "16")
    result = runner.invoke(app, ["config", "show", "--json"])
    assert json.loads(result.stdout)["train"]["batch_size"] == 16


def test_config_show_table_names_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[train]\nepochs = 3\n")
    monkeypatch.setenv("MELDCTL_TRAIN__SEED", "7")
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["--config", str(other), "config", "show"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "toml" in lines["train.epochs"] and "env" in lines["train.seed"]
    assert "default" in lines["train.batch_size"]


def test_bad_setting_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "meldctl.toml").write_text('[train]\nbatch_size = "big"\n')
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "train.batch_size" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_config_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "init"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "meldctl.toml").read_text()
    assert "[remote]" in written and "batch_size = 32" in written
    (tmp_path / "meldctl.toml").write_text("[train]\nepochs = 2\n")
    result = runner.invoke(app, ["config", "init"])
    assert result.exit_code == 1 and "--force" in result.output
    assert (tmp_path / "meldctl.toml").read_text() == "[train]\nepochs = 2\n"
    assert runner.invoke(app, ["config", "init", "--force"]).exit_code == 0
    assert "batch_size = 32" in (tmp_path / "meldctl.toml").read_text()


def test_console_script_runs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "meldctl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
