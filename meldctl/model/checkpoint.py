"""Checkpoints that can never run code.

A checkpoint is a dict of tensors and plain values (str, int, float, bool, None, list, dict), written with
`torch.save` to a temporary name and renamed into place, and read back with `torch.load(weights_only=True)`,
which refuses any pickle that would import or call something.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from meldctl import __version__
from meldctl.errors import CheckpointError
from meldctl.io import atomic_path
from meldctl.model.config import ModelConfig, PreprocessConfig
from meldctl.model.fusion import MeldModel, build_model

FORMAT = "meldctl-checkpoint"
FORMAT_VERSION = 1


@dataclass
class LoadedCheckpoint:
    """A checkpoint's model, ready for eval or predict, with what it was trained with."""

    model: MeldModel
    preprocess: PreprocessConfig
    tokenizer: Any | None
    metrics: dict[str, Any]
    path: Path
    training: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: Path,
    model: MeldModel,
    preprocess: PreprocessConfig,
    *,
    tokenizer_files: dict[str, str] | None = None,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: Destination (`best.pt`, `last.pt`).
        model: The model; a DDP wrapper must be unwrapped first.
        preprocess: The preprocessing the model was trained with.
        tokenizer_files: The text tokenizer as `{file name: text}` (text models), so loading needs no network.
        metrics: Plain numbers (dev scores, epoch).
        training: Resume state (optimiser, scheduler, epoch, ...), only in `last.pt`.
        extra: Any further plain values (settings, data summary).
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meldctl_version": __version__,
        "model_config": model.config.to_dict(),
        "labels": {"emotion": list(model.config.emotions), "sentiment": list(model.config.sentiments)},
        "preprocess": preprocess.to_dict(),
        "tokenizer": tokenizer_files,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": metrics or {},
        "training": training,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a checkpoint's payload without building the model.

    Raises:
        CheckpointError: a missing file, a file that is not a checkpoint (or is truncated), a pickle that
            would run code, or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path} is not a meldctl checkpoint (not a torch checkpoint file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Unsupported global" in str(exc) or "Unsupported operand" in str(exc):
            raise CheckpointError(
                f"{path} refused: it holds objects that would run code when loaded",
                hint="meldctl checkpoints hold tensors and plain values only; do not trust this file",
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or damaged): {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a meldctl checkpoint", hint="train one with meldctl train")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this meldctl ({__version__}) reads up to "
            f"{FORMAT_VERSION}",
            hint="upgrade meldctl",
        )
    return payload


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored in a checkpoint, offline, in eval mode.

    Raises:
        CheckpointError: see `read_checkpoint`, or weights that do not fit the stored config.
    """
    payload = read_checkpoint(path)
    config = ModelConfig.from_dict(payload["model_config"])
    model = build_model(config, pretrained=False)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored model config: {exc}") from None
    tokenizer = None
    if payload.get("tokenizer"):
        from meldctl.model.text import tokenizer_from_files

        tokenizer = tokenizer_from_files(payload["tokenizer"])
    model.to(device).eval()
    return LoadedCheckpoint(
        model=model,
        preprocess=PreprocessConfig.from_dict(payload["preprocess"]),
        tokenizer=tokenizer,
        metrics=payload.get("metrics") or {},
        path=Path(path),
        training=payload.get("training"),
        extra=payload.get("extra") or {},
    )
