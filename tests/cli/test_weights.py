"""`meldctl weights fetch` into temporary caches, then an offline process that finds and loads the weights.

Each scenario runs in a fresh process: huggingface_hub reads HF_HOME once, when imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meldctl.cli import app

_FETCH_THEN_USE = """
import json, sys
from typer.testing import CliRunner
from meldctl.cli import app

fetch = CliRunner().invoke(app, ["weights", "fetch", "--json", *sys.argv[1:]])
assert fetch.exit_code == 0, fetch.output
doctor = CliRunner().invoke(app, ["doctor", "--for", "train", "--json"])

from transformers import AutoModel, AutoTokenizer
from meldctl.model.video import build_r3d18

AutoModel.from_pretrained("meldctl-test/tiny-bert")  # by name, from the cache, with HF_HUB_OFFLINE=1
AutoTokenizer.from_pretrained("meldctl-test/tiny-bert")
build_r3d18("kinetics400")  # torchvision finds the file in TORCH_HOME and downloads nothing
print(json.dumps({"fetch": json.loads(fetch.stdout), "doctor": json.loads(doctor.stdout),
                  "doctor_exit": doctor.exit_code}))
"""


def offline_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"),
            "HF_HUB_OFFLINE": "1", "MELDCTL_MODEL__TEXT_MODEL": "meldctl-test/tiny-bert",
            "MELDCTL_MODEL__VIDEO_WEIGHTS": "kinetics400", "HTTPS_PROXY": "http://127.0.0.1:9"}  # fmt: skip


def test_local_copies_go_into_the_caches_and_load_offline(tmp_path: Path, tiny_bert: Path, r3d_weights: Path) -> None:
    args = ["--text-from", str(tiny_bert), "--video-from", str(r3d_weights)]
    done = subprocess.run([sys.executable, "-c", _FETCH_THEN_USE, *args], env=offline_env(tmp_path),
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(w["kind"], w["state"]) for w in report["fetch"]] == [("text", "cached"), ("video", "cached")]
    assert report["fetch"][1]["path"] == str(tmp_path / "torch" / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth")
    checks = {c["name"]: c for c in report["doctor"]["checks"]}
    assert checks["text weights"]["status"] == checks["video weights"]["status"] == "ok"
    assert str(tmp_path / "hf") in checks["text weights"]["detail"]
    assert report["doctor_exit"] == 0 and report["doctor"]["missing_for"] == []


def test_offline_without_a_local_copy_names_the_option(tmp_path: Path) -> None:
    fetch = [sys.executable, "-m", "meldctl", "weights", "fetch", "--video-weights", "none"]
    done = subprocess.run(fetch, env=offline_env(tmp_path), capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert "cannot download text encoder 'meldctl-test/tiny-bert'" in done.stderr
    assert "--text-from" in done.stderr and "Traceback" not in done.stderr


def test_a_file_that_is_not_r3d18_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch reads it at each call
    bogus = tmp_path / "r3d.pth"
    bogus.write_bytes(b"not a state dict")
    done = CliRunner().invoke(app, ["weights", "fetch", "--text-model", "minilm", "--video-from", str(bogus)])
    assert done.exit_code == 1 and "not a loadable R3D-18 state dict" in done.stderr
    assert not (tmp_path / "torch" / "hub" / "checkpoints").exists()
