from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Before anything imports huggingface_hub, which reads these once: no test may try the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from helpers import make_tiny_bert  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the user's MELDCTL_* variables, meldctl.toml or network caches."""
    for name in list(os.environ):
        if name.startswith("MELDCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    from meldctl.cli.common import root

    monkeypatch.setattr(root, "config", None)
    monkeypatch.setattr(root, "debug", False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny BERT and its tokenizer, usable as --text-model."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample, prepared once per session (clips, 16 kHz WAVs, manifests). Treat it as read-only:
    tests that write a cache copy it first (`prepared_copy`)."""
    from meldctl.prepare import prepare
    from meldctl.settings import DataSettings

    data_dir = tmp_path_factory.mktemp("sample-data")
    prepare(DataSettings(data_dir=data_dir, source="sample", workers=2))
    return data_dir


@pytest.fixture
def prepared_copy(sample_data: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared sample, without any feature cache."""
    import shutil

    target = tmp_path / "data"
    shutil.copytree(sample_data, target, symlinks=True, ignore=shutil.ignore_patterns("cache"))
    return target


@pytest.fixture(scope="session")
def trained_run(sample_data: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with best.pt of a small three-modality model trained one epoch on the sample."""
    import shutil

    from meldctl.settings import load_settings
    from meldctl.training.trainer import run_training

    data_dir = tmp_path_factory.mktemp("trained") / "data"
    shutil.copytree(sample_data, data_dir, symlinks=True, ignore=shutil.ignore_patterns("cache"))
    settings = load_settings(
        overrides={
            "data": {"data_dir": data_dir},
            "model": {
                "text_model": str(tiny_bert),
                "video_weights": "none",
                "num_frames": 4,
                "frame_size": 32,
                "audio_seconds": 2.0,
            },
            "train": {"epochs": 1, "batch_size": 8, "workers": 0},
        }
    )
    run_dir = data_dir.parent / "run"
    run_training(settings.data, settings.model, settings.train, run_dir=run_dir)
    return run_dir
