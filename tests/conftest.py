from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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
