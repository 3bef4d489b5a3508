"""The core model package: importable from a notebook, with torch, torchvision and transformers only.

`meldctl.model.config` needs neither torch nor transformers (the settings read it); the model itself is
imported on first use.
"""

from __future__ import annotations

from typing import Any

from meldctl.model.config import ModelConfig, PreprocessConfig

__all__ = ["MeldModel", "ModelConfig", "PreprocessConfig", "build_model"]


def __getattr__(name: str) -> Any:
    if name in ("MeldModel", "build_model"):
        from meldctl.model import fusion

        return getattr(fusion, name)
    raise AttributeError(f"module 'meldctl.model' has no attribute {name!r}")
