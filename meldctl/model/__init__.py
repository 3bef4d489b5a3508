"""The core model package: importable from a notebook, with torch, torchvision and transformers only."""

from meldctl.model.config import ModelConfig, PreprocessConfig
from meldctl.model.fusion import MeldModel, build_model

__all__ = ["MeldModel", "ModelConfig", "PreprocessConfig", "build_model"]
