"""The SageMaker inference-container contract: model folder and port from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from meldctl.errors import ConfigError, MeldError
from meldctl.serving.container_env import MODEL_DIR, ServingContainer, detect_container


def test_outside_sagemaker_there_is_no_container() -> None:
    assert detect_container({}) is None
    assert detect_container({"SM_CHANNEL_TRAIN": "/x"}) is None


def test_the_contract_defaults_and_variables(tmp_path: Path) -> None:
    assert detect_container({"SAGEMAKER_BIND_TO_PORT": "9090"}) == ServingContainer(MODEL_DIR, 9090, "0.0.0.0")
    assert detect_container({"SM_MODEL_DIR": str(tmp_path)}) == ServingContainer(tmp_path, 8080, "0.0.0.0")
    for bad in ("http", "0", "70000"):
        with pytest.raises(ConfigError, match="SAGEMAKER_BIND_TO_PORT"):
            detect_container({"SAGEMAKER_BIND_TO_PORT": bad})


def test_the_checkpoint_is_best_pt_at_the_top_or_the_only_one(tmp_path: Path) -> None:
    container = ServingContainer(tmp_path, 8080)
    with pytest.raises(MeldError, match="no best.pt in the model folder"):
        container.checkpoint()
    (tmp_path / "run" / "a").mkdir(parents=True)
    (tmp_path / "run" / "a" / "best.pt").write_bytes(b"x")
    assert container.checkpoint() == tmp_path / "run" / "a" / "best.pt"
    (tmp_path / "run" / "b").mkdir()
    (tmp_path / "run" / "b" / "best.pt").write_bytes(b"x")
    with pytest.raises(MeldError, match="2 copies of best.pt"):
        container.checkpoint()
    (tmp_path / "best.pt").write_bytes(b"x")
    assert container.checkpoint() == tmp_path / "best.pt"
