"""The SageMaker inference-container contract: the only module of `serving/` that reads `os.environ`.

SageMaker starts a hosting container as `docker run IMAGE serve`, unpacks the model's `model.tar.gz` into
`/opt/ml/model`, and expects an HTTP server on port 8080 of every interface answering `GET /ping` and
`POST /invocations`. Inference pipelines move the port with `SAGEMAKER_BIND_TO_PORT`; `SM_MODEL_DIR` (the
training toolkit's name for the model folder) moves the folder, which is how the tests run a "container" in a
temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meldctl.errors import ConfigError, MeldError

MODEL_DIR = Path("/opt/ml/model")
PORT = 8080
HOST = "0.0.0.0"  # SageMaker reaches the container from outside: every interface, not the loopback
CHECKPOINT = "best.pt"


@dataclass(frozen=True)
class ServingContainer:
    """Where a SageMaker hosting container finds its model and listens."""

    model_dir: Path
    port: int
    host: str = HOST

    def checkpoint(self) -> Path:
        """`best.pt` at the top of the model folder (as `meldctl train` exports it), else the only one below.

        Raises:
            MeldError: no best.pt, or several and none at the top.
        """
        top = self.model_dir / CHECKPOINT
        if top.is_file():
            return top
        found = sorted(self.model_dir.rglob(CHECKPOINT)) if self.model_dir.is_dir() else []
        if len(found) == 1:
            return found[0]
        what = "no" if not found else f"{len(found)} copies of"
        raise MeldError(
            f"{what} {CHECKPOINT} in the model folder {self.model_dir}",
            hint="model.tar.gz must hold best.pt at its top (meldctl endpoint deploy packages it so)",
        )


def detect_container(environ: Mapping[str, str] | None = None) -> ServingContainer | None:
    """The hosting container this process runs in, or None outside SageMaker.

    Recognised by `SM_MODEL_DIR` or `SAGEMAKER_BIND_TO_PORT`, or (reading the real environment) by the folder
    `/opt/ml/model` that SageMaker mounts.

    Raises:
        ConfigError: `SAGEMAKER_BIND_TO_PORT` is not a port number.
    """
    reading_os = environ is None
    env: Mapping[str, str] = os.environ if environ is None else environ
    marked = "SM_MODEL_DIR" in env or "SAGEMAKER_BIND_TO_PORT" in env
    if not marked and not (reading_os and MODEL_DIR.is_dir()):
        return None
    return ServingContainer(model_dir=Path(env.get("SM_MODEL_DIR") or MODEL_DIR), port=_port(env))


def _port(env: Mapping[str, str]) -> int:
    raw = env.get("SAGEMAKER_BIND_TO_PORT") or str(PORT)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"SAGEMAKER_BIND_TO_PORT={raw!r} is not a port number")
    return int(raw)
