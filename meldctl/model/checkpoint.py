"""Checkpoints that can never run code, and whose every field is checked before it is used.

A checkpoint is a dict of tensors and plain values (str, int, float, bool, None, list, dict), written with
`torch.save` to a temporary name and renamed into place, and read back with `torch.load(weights_only=True)`,
which refuses any pickle that would import or call something. Then, before anything is allocated from it:
the model and preprocessing configs are validated against their fields' bounds (a tampered
`num_frames=100000` is one line, not a 15 GB allocation), the label lists must match the configs and the
heads, every weight must have the shape the config implies and be finite, and the tokenizer must parse.
"""

from __future__ import annotations

import errno
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from meldctl import __version__
from meldctl.errors import CheckpointError
from meldctl.io import atomic_path
from meldctl.model.config import ModelConfig, PreprocessConfig
from meldctl.model.fusion import MeldModel, build_model, uses_tokenizer

FORMAT = "meldctl-checkpoint"
FORMAT_VERSION = 2  # 2: Kinetics video geometry, masked audio with stored statistics, modality stand-ins
_MAX_TOKENIZER_BYTES = 64 << 20


@dataclass
class LoadedCheckpoint:
    """A checkpoint's model, ready for eval or predict, with what it was trained with."""

    model: MeldModel
    preprocess: PreprocessConfig
    tokenizer: Any | None
    tokenizer_files: dict[str, str] | None
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

    Raises:
        CheckpointError: the folder has no room for it (the previous file at `path`, if any, is kept).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meldctl_version": __version__,
        "model_config": model.config.to_dict(),
        "labels": {"emotion": list(model.config.emotions), "sentiment": list(model.config.sentiments)},
        "preprocess": preprocess.to_dict(),
        "tokenizer": tokenizer_files,
        "state_dict": state,
        "metrics": metrics or {},
        "training": training,
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = sum(t.numel() * t.element_size() for t in state.values()) * (2 if training else 1)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise _no_space(path, needed, free)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (RuntimeError, OSError) as exc:  # torch reports a full disk as "PytorchStreamWriter failed writing"
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if isinstance(exc, RuntimeError) and "writ" not in str(exc):
            raise
        raise _no_space(path, needed, shutil.disk_usage(path.parent).free) from None
    return path


def _no_space(path: Path, needed: int, free: int) -> CheckpointError:
    return CheckpointError(
        f"no room to write {path.name} in {path.parent}: it needs about {needed / 1e6:.0f} MB, "
        f"{free / 1e6:.0f} MB free",
        hint="free some space and resume the run (meldctl train --resume RUN): the last saved checkpoint is kept",
    )


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a checkpoint's payload without building the model.

    Returns:
        The payload, with `model_config` and `preprocess` replaced by validated `ModelConfig` and
        `PreprocessConfig` objects.

    Raises:
        CheckpointError: a missing file, a file that is not a checkpoint (or is truncated), a pickle that
            would run code, an older or newer format version, or a field out of bounds or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path} is not a meldctl checkpoint (not a torch checkpoint file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # torch words this "Unsupported global" or (2.11) "unsupported GLOBAL posix.system whose module posix
        # is blocked"; its message goes on to suggest weights_only=False, which is exactly what must not be done.
        if re.search(r"unsupported (global|operand)|whose module .* is blocked", str(exc), re.IGNORECASE):
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
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by an older meldctl (format {version}), whose video and audio inputs differ",
            hint="train it again with this meldctl",
        )
    payload["model_config"], payload["preprocess"] = _configs(path, payload)
    _check_labels(path, payload)
    return payload


def _configs(path: Path, payload: dict[str, Any]) -> tuple[ModelConfig, PreprocessConfig]:
    configs = []
    for key, config in (("model_config", ModelConfig), ("preprocess", PreprocessConfig)):
        value = payload.get(key)
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: the {key} field is missing or not a table")
        try:
            configs.append(config.from_dict(value))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "(whole)"
            raise CheckpointError(
                f"{path}: {key}.{where} = {error.get('input')!r} is not acceptable: "
                f"{error['msg'].removeprefix('Value error, ')}",
                hint="the checkpoint was altered or damaged; do not trust it",
            ) from None
    model_config, preprocess = configs
    if model_config.n_mels != preprocess.n_mels:
        raise CheckpointError(f"{path}: the model takes {model_config.n_mels} Mel bands, the preprocessing makes "
                              f"{preprocess.n_mels}")  # fmt: skip
    return model_config, preprocess


def _check_labels(path: Path, payload: dict[str, Any]) -> None:
    config: ModelConfig = payload["model_config"]
    labels = payload.get("labels")
    expected = {"emotion": list(config.emotions), "sentiment": list(config.sentiments)}
    if labels != expected:
        raise CheckpointError(f"{path}: its label lists {labels!r} do not match its model config {expected!r}")


def _check_weights(path: Path, model: MeldModel, state: Any) -> None:
    """Every weight present, of the expected shape, finite; nothing else."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the state_dict field is not a table of tensors")
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise CheckpointError(
            f"{path}: weights do not match the stored model config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, e.g. {first})"
        )
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[name].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: weight {name} has shape {shape}, the config needs "
                                  f"{tuple(expected[name].shape)}")  # fmt: skip
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: weight {name} holds NaN or infinite values", hint="do not use it")
    if "audio.mel_std" in state and not (state["audio.mel_std"] > 0).all():
        raise CheckpointError(f"{path}: the audio normalisation has a zero or negative standard deviation")


def _tokenizer(path: Path, files: Any) -> Any:
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{path}: this text model's checkpoint has no tokenizer", hint="train it again")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"{path}: the tokenizer field must map file names to text")
    if sum(len(v) for v in files.values()) > _MAX_TOKENIZER_BYTES:
        raise CheckpointError(f"{path}: the tokenizer files are implausibly large")
    from meldctl.model.text import tokenizer_from_files

    try:
        tokenizer = tokenizer_from_files(files)
        tokenizer("check", truncation=True, max_length=8)
    except Exception as exc:  # transformers raises many kinds for unparsable tokenizer files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: its tokenizer cannot be loaded ({reason})") from None
    return tokenizer


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored in a checkpoint, offline, in eval mode.

    Raises:
        CheckpointError: see `read_checkpoint`, or weights or a tokenizer that do not fit the stored config.
    """
    payload = read_checkpoint(path)
    config: ModelConfig = payload["model_config"]
    reads_text = uses_tokenizer(config)
    if reads_text and not isinstance(config.text_config, dict):
        raise CheckpointError(f"{path}: this text model's checkpoint has no text encoder config")
    tokenizer = _tokenizer(path, payload.get("tokenizer")) if reads_text else None
    try:
        # On the meta device first: the architecture's shapes, with nothing allocated, so a config that asks
        # for absurd sizes is refused here, and the real build below is no larger than the file's weights.
        with torch.device("meta"):
            skeleton = build_model(config, pretrained=False)
    except (ValueError, TypeError, KeyError, OSError) as exc:  # a text_config that transformers cannot build
        raise CheckpointError(f"{path}: its text encoder config cannot be built ({exc})") from None
    _check_weights(path, skeleton, payload["state_dict"])
    model = build_model(config, pretrained=False)
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    training = payload.get("training")
    return LoadedCheckpoint(
        model=model,
        preprocess=payload["preprocess"],
        tokenizer=tokenizer,
        tokenizer_files=payload.get("tokenizer") if tokenizer is not None else None,
        metrics=payload.get("metrics") if isinstance(payload.get("metrics"), dict) else {},
        path=Path(path),
        training=training if isinstance(training, dict) else None,
        extra=payload.get("extra") if isinstance(payload.get("extra"), dict) else {},
    )
