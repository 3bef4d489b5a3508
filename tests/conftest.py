from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Before anything imports huggingface_hub, which reads these once: no test may try the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker has a core of its own: one torch thread each (also in the commands tests start), rather
    # than two workers' threads spinning against each other on the same cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import copy_prepared, make_tiny_bert, train_small  # noqa: E402


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
    from meldctl.cli.common import console

    monkeypatch.setattr(console, "width", 200)  # tables as wide as their content, whatever the terminal


@pytest.fixture(scope="session")
def dialogue_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The synthetic dialogue set (`tests/dialogues.py`) and two text models trained on it, once per session:
    `context` sees the line before (context_past 1), `alone` does not; `text_model` is their tiny BERT.

    That BERT is built from a fixed seed: the session's `tiny_bert` is random weights drawn wherever the global
    generator stands when it is first asked for, and how well the frozen features separate the cue words (and so
    whether the replies are learned) varied with the order the tests ran in.
    """
    import torch
    from dialogues import train_dialogue_model, write_dialogue_data

    root = tmp_path_factory.mktemp("dialogues")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        bert = make_tiny_bert(root / "tiny-bert")
    data_dir = write_dialogue_data(root / "data")
    return {
        "data": data_dir,
        "text_model": bert,
        "context": train_dialogue_model(data_dir, bert, root / "with", past=1),
        "alone": train_dialogue_model(data_dir, bert, root / "without", past=0),
    }


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
    return copy_prepared(sample_data, tmp_path / "data")


@pytest.fixture(scope="session")
def trained_run(sample_data: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with best.pt of a small three-modality model trained one epoch on the sample."""
    return train_small(sample_data, tiny_bert, tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def r3d_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real R3D-18 state dict (randomly initialised: the Kinetics-400 file cannot be downloaded here)."""
    import torch
    from torchvision.models.video import r3d_18

    path = tmp_path_factory.mktemp("r3d") / "r3d_18.pth"
    torch.save(r3d_18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def episode(tmp_path_factory: pytest.TempPathFactory):
    """A ~25 s "episode" (tests/episode.py): 8 espeak-ng sentences with pauses over a moving picture, with its
    cues; the folder holds no subtitle file (tests that want one beside it link the video elsewhere)."""
    from episode import have_espeak, write_episode

    assert have_espeak(), "the analysis tests need espeak-ng: apt-get install espeak-ng (.ci/run does)"
    return write_episode(tmp_path_factory.mktemp("episode") / "episode.mp4")


@pytest.fixture(scope="session")
def silent_episode(tmp_path_factory: pytest.TempPathFactory):
    """The same episode's picture with no audio stream at all."""
    from episode import write_episode

    return write_episode(tmp_path_factory.mktemp("silent") / "silent.mp4", audio=False)


@pytest.fixture(scope="session")
def av_run(sample_data: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with best.pt of a small audio+video model (reads no text: what voice activity is for)."""
    return train_small(sample_data, tiny_bert, tmp_path_factory.mktemp("av"), modalities="audio,video")
