"""What every command shares: the root options, settings resolution and output helpers.

Only `meldctl/cli/` prints; everything below it returns values or raises `MeldError`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from meldctl.errors import MeldError
from meldctl.settings import Settings, load_settings

console = Console(stderr=True, highlight=False)
"""Progress, tables and messages go to stderr, so that stdout carries only `--json` output."""


@dataclass
class RootOptions:
    config: Path | None = None
    debug: bool = False


root = RootOptions()


def resolve_settings(
    config: Path | None = None, job: dict[str, dict[str, Any]] | None = None, **sections: dict[str, Any]
) -> Settings:
    """Settings with these command-line values on top (None values are not flags that were given).

    Args:
        config: The TOML file to read instead of `--config` / `./meldctl.toml` (a resumed run's settings).
        job: Inside a SageMaker job, its layer (`SageMakerJob.settings_layer()`), below the flags.
        sections: The flags, as `section={key: value}`.
    """
    return load_settings(config or root.config, sections, job=job)


def resolve_checkpoint(explicit: Path | None, given_as: str = "--ckpt") -> tuple[Path, str]:
    """The checkpoint to load and where it came from: the flag, else setting model.checkpoint, else the newest
    `runs/*/best.pt`.

    Raises:
        MeldError: none given and none found.
    """
    settings = resolve_settings()
    if explicit is not None:
        return explicit, given_as
    if settings.model.checkpoint is not None:
        return settings.model.checkpoint, "setting model.checkpoint"
    from meldctl.inference import newest_checkpoint

    found = newest_checkpoint(settings.train.runs_root)
    if found is None:
        raise MeldError(
            f"no checkpoint given and none found under {settings.train.runs_root}/*/best.pt",
            hint=f"pass {given_as} PATH, or train one with meldctl train",
        )
    return found, f"newest under {settings.train.runs_root}/"


def print_json(payload: Any) -> None:
    """Write one JSON document to stdout (paths and other objects as strings)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
