"""Fixtures of the serving tests: the shared `meldctl serve` process and the sample's test clips."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_servers import ServeProcess, sample_test_clips, shared_server


@pytest.fixture
def served(request: pytest.FixtureRequest, trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> ServeProcess:
    """The session's `meldctl serve` of the sample checkpoint (see `serve_servers.shared_server`)."""
    return shared_server(request, trained_run, tmp_path_factory)


@pytest.fixture
def clips(trained_run: Path) -> list[Path]:
    """The sample's test clips."""
    return sample_test_clips(trained_run)
