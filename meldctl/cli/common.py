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

from meldctl.settings import Settings, load_settings

console = Console(stderr=True, highlight=False)
"""Progress, tables and messages go to stderr, so that stdout carries only `--json` output."""


@dataclass
class RootOptions:
    config: Path | None = None
    debug: bool = False


root = RootOptions()


def resolve_settings(**sections: dict[str, Any]) -> Settings:
    """Settings with these command-line values on top (None values are not flags that were given)."""
    return load_settings(root.config, sections)


def print_json(payload: Any) -> None:
    """Write one JSON document to stdout (paths and other objects as strings)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def resolve_checkpoint(explicit: Path | None) -> tuple[Path, str]:
    """The checkpoint to use and where it came from: `--ckpt`, else the setting, else the newest run's best.pt.

    Raises:
        MeldError: none of them gives one.
    """
    from meldctl.errors import MeldError

    settings = resolve_settings()
    if explicit is not None:
        return explicit, "--ckpt"
    if settings.model.checkpoint is not None:
        return settings.model.checkpoint, "setting model.checkpoint"
    from meldctl.inference import newest_checkpoint

    found = newest_checkpoint(settings.train.runs_root)
    if found is None:
        raise MeldError(
            f"no checkpoint given and none found under {settings.train.runs_root}/*/best.pt",
            hint="pass --ckpt PATH, or train one with meldctl train",
        )
    return found, f"newest under {settings.train.runs_root}/"
