"""The SageMaker training-container contract: the only module below `cli/` that reads `os.environ`.

Inside a training job SageMaker (and the SDK's container driver) describe the job through `SM_*` variables
and files under `/opt/ml`:

| what | where |
| --- | --- |
| data channels | `SM_CHANNEL_<NAME>` (else the folders under `SM_INPUT_DATA_DIR`, `/opt/ml/input/data`) |
| hyperparameters (`train__lr`, ...) | `SM_HPS` (JSON), else `/opt/ml/input/config/hyperparameters.json` |
| the model (becomes `model.tar.gz`) | `SM_MODEL_DIR`, `/opt/ml/model` |
| checkpoints (synced with S3, restored on spot resumption) | `remote.checkpoint_dir`, `/opt/ml/checkpoints` |
| TensorBoard (synced with S3 while the job runs) | `remote.tensorboard_dir`, `/opt/ml/output/tensorboard` |
| why the job failed (shown as `FailureReason`) | `SM_OUTPUT_DIR/failure`, `/opt/ml/output/failure` |

Every `/opt/ml` path can be moved with its `SM_*` variable (`SM_CHECKPOINT_DIR` and `SM_TENSORBOARD_DIR` are
meldctl's own), which is how the tests run a "job" in a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meldctl.errors import ConfigError, MeldError
from meldctl.hyperparameters import as_text, from_hyperparameters
from meldctl.io import atomic_path, write_text_atomic
from meldctl.settings import RemoteSettings

ML_ROOT = Path("/opt/ml")
FAILURE_LIMIT = 1024  # SageMaker shows the first 1024 characters of the failure file as FailureReason.

# Channels the SageMaker SDK adds for its own use; they never hold data.
SDK_CHANNELS = frozenset({"code", "sm_drivers", "recipe"})
TEXT_MODEL_CHANNELS = ("text_model", "text-model")
VIDEO_WEIGHTS_CHANNELS = ("video_weights", "video-weights")
WEIGHTS_CHANNEL = "weights"
WEIGHT_CHANNELS = frozenset({*TEXT_MODEL_CHANNELS, *VIDEO_WEIGHTS_CHANNELS, WEIGHTS_CHANNEL})

_WEIGHT_SUFFIXES = (".pth", ".pt")


@dataclass
class SageMakerJob:
    """Where this training job finds its inputs and leaves its outputs.

    Attributes:
        data_dir: The prepared data folder (a channel, or a folder combining several channels), None when
            the job has no data channel (then `data.data_dir` comes from the settings).
        model_dir: What ends up in `model.tar.gz`.
        checkpoint_dir: Kept in sync with S3 by SageMaker; restored when a spot job resumes.
        tensorboard_dir: Uploaded to S3 while the job runs.
        output_dir: Holds the `failure` file.
        hyperparameters: As the job received them, values as strings.
        run_dir: The run folder inside the job (not uploaded; `export` copies what matters to `model_dir`).
        channels: Every data channel by name (SDK channels left out).
        rank: The torchrun rank of this process (0 outside torchrun); only rank 0 exports.
    """

    data_dir: Path | None
    model_dir: Path
    checkpoint_dir: Path
    tensorboard_dir: Path
    output_dir: Path
    hyperparameters: dict[str, str]
    run_dir: Path
    channels: dict[str, Path] = field(default_factory=dict)
    rank: int = 0

    def settings_layer(self) -> dict[str, dict[str, Any]]:
        """The job's part of the settings (a `load_settings(job=...)` layer): hyperparameters, then its folders.

        Pure: nothing is written (`prepare_data` combines several data channels).

        Raises:
            ConfigError: an unknown hyperparameter or a value that does not fit its setting (named).
        """
        layer = from_hyperparameters(self.hyperparameters)
        folders: dict[tuple[str, str], Any] = {
            ("train", "run_dir"): self.run_dir,
            ("train", "checkpoint_dir"): self.checkpoint_dir,
            ("train", "tensorboard_dir"): self.tensorboard_dir,
            **self._weights(),
        }
        if self.data_dir is not None:
            folders[("data", "data_dir")] = self.data_dir
        for (section, key), value in folders.items():
            layer.setdefault(section, {})[key] = value
        return layer

    def prepare_data(self) -> Path | None:
        """The data folder, ready to read: several data channels are first combined into one folder of symlinks."""
        data_channels = [path for name, path in self.channels.items() if name not in WEIGHT_CHANNELS]
        if self.data_dir is not None and len(data_channels) > 1:
            combine_channels(data_channels, self.data_dir)
        return self.data_dir

    def resume_from(self) -> Path | None:
        """The newest `last.pt` in the checkpoint folder (left by an interrupted spot job or a retry), if any."""
        if not self.checkpoint_dir.is_dir():
            return None
        found = [p for p in self.checkpoint_dir.rglob("last.pt") if p.is_file()]
        return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None

    def export(self, run_dir: Path) -> list[Path]:
        """Copy the best model, its evaluation report(s) and the settings from `run_dir` into `model_dir`.

        Only rank 0 exports (under torchrun every process would otherwise write the same files).

        Raises:
            MeldError: the run left no best.pt.
        """
        if self.rank != 0:
            return []
        run_dir = Path(run_dir)
        if not (run_dir / "best.pt").is_file():
            raise MeldError(f"no best.pt in {run_dir}: nothing to export to {self.model_dir}")
        wanted = [run_dir / "best.pt", *sorted(run_dir.glob("*.toml")), *sorted(run_dir.glob("*.json"))]
        if (run_dir / "eval").is_dir():
            wanted += sorted(p for p in (run_dir / "eval").rglob("*") if p.is_file())
        copied = []
        for source in wanted:
            target = self.model_dir / source.relative_to(run_dir)
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            copied.append(target)
        return copied

    def fail(self, reason: str) -> None:
        """Write why the job failed to `output_dir/failure` (SageMaker shows it as the FailureReason)."""
        text = reason.strip() or "meldctl train failed"
        write_text_atomic(self.output_dir / "failure", text[:FAILURE_LIMIT] + "\n")

    @contextlib.contextmanager
    def failures_reported(self, stopping: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Write any exception of the block to the failure file, then let it go on; not when `stopping()`: an
        error caused by a stop (an interrupted cache build) is no failure of the job."""
        try:
            yield
        except Exception as exc:
            if not stopping():
                self.fail(_reason(exc))
            raise

    def _weights(self) -> dict[tuple[str, str], Any]:
        found: dict[tuple[str, str], Any] = {}
        generic = self.channels.get(WEIGHTS_CHANNEL)
        if generic is not None:
            for name in TEXT_MODEL_CHANNELS:
                if (generic / name).is_dir():
                    found[("model", "text_model")] = str(generic / name)
            if (generic / "config.json").is_file():
                found[("model", "text_model")] = str(generic)
            weights = _weights_file(generic)
            if weights is not None:
                found[("model", "video_weights")] = str(weights)
        for name in TEXT_MODEL_CHANNELS:
            if name in self.channels:
                found[("model", "text_model")] = str(_single_subfolder(self.channels[name], "config.json"))
        for name in VIDEO_WEIGHTS_CHANNELS:
            if name in self.channels:
                weights = _weights_file(self.channels[name])
                if weights is None:
                    raise ConfigError(f"channel {name} ({self.channels[name]}) holds no .pth file")
                found[("model", "video_weights")] = str(weights)
        return found


def detect(environ: Mapping[str, str] | None = None) -> SageMakerJob | None:
    """The job this process runs in, or None outside SageMaker.

    A job is recognised by `SM_MODEL_DIR` or `SM_TRAINING_ENV` (set by the SageMaker SDK's and toolkit's
    drivers), or, for a bare container started by SageMaker, by `/opt/ml/input/config/resourceconfig.json`.

    Args:
        environ: The environment to read; None reads `os.environ` (and then looks at `/opt/ml`).
    """
    reading_os = environ is None
    env: Mapping[str, str] = os.environ if environ is None else environ
    training_env = _json(env.get("SM_TRAINING_ENV"), {})
    bare_container = reading_os and (ML_ROOT / "input" / "config" / "resourceconfig.json").is_file()
    if "SM_MODEL_DIR" not in env and not training_env and not bare_container:
        return None

    model_dir = Path(env.get("SM_MODEL_DIR") or training_env.get("model_dir") or ML_ROOT / "model")
    input_dir = Path(env.get("SM_INPUT_DIR") or training_env.get("input_dir") or ML_ROOT / "input")
    input_data_dir = Path(env.get("SM_INPUT_DATA_DIR") or input_dir / "data")
    config_dir = Path(env.get("SM_INPUT_CONFIG_DIR") or input_dir / "config")
    output_dir = Path(env.get("SM_OUTPUT_DIR") or training_env.get("output_dir") or ML_ROOT / "output")
    channels = _channels(env, training_env, input_data_dir)
    hyperparameters = _hyperparameters(env, training_env, config_dir)
    data_channels = {name: path for name, path in channels.items() if name not in WEIGHT_CHANNELS}
    if len(data_channels) == 1:
        data_dir: Path | None = _single_subfolder(next(iter(data_channels.values())), "manifest")
    elif data_channels:
        data_dir = model_dir.parent / "meldctl-data"
    else:
        data_dir = None
    return SageMakerJob(
        data_dir=data_dir,
        model_dir=model_dir,
        checkpoint_dir=_synced_dir(env, "checkpoint_dir"),
        tensorboard_dir=_synced_dir(env, "tensorboard_dir"),
        output_dir=output_dir,
        hyperparameters=hyperparameters,
        channels=channels,
        run_dir=model_dir.parent / "meldctl-run",
        rank=int(env.get("RANK") or 0),
    )


def _synced_dir(env: Mapping[str, str], setting: str) -> Path:
    """The folder SageMaker syncs with S3 (`SM_CHECKPOINT_DIR`, ...), else the `remote.` setting of that name from
    the environment, else its default."""
    name = setting.upper()
    return Path(env.get(f"SM_{name}") or env.get(f"MELDCTL_REMOTE__{name}") or getattr(RemoteSettings(), setting))


def combine_channels(channels: list[Path], target: Path) -> Path:
    """Merge several channel folders (one per split, say) into `target` as a tree of symlinks.

    Files already present in an earlier channel win; the target is rebuilt from scratch each time.
    """
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for channel in channels:
        root = _single_subfolder(channel, "manifest")
        for source in sorted(root.rglob("*")):
            if source.is_dir():
                continue
            link = target / source.relative_to(root)
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve())
    return target


def _channels(env: Mapping[str, str], training_env: dict[str, Any], input_data_dir: Path) -> dict[str, Path]:
    names = _json(env.get("SM_CHANNELS"), None)
    found: dict[str, Path] = {}
    if isinstance(names, list):
        for name in names:
            path = env.get(f"SM_CHANNEL_{str(name).upper()}")
            if path:
                found[str(name)] = Path(path)
    for key, path in env.items():
        if key.startswith("SM_CHANNEL_") and path:
            name = key[len("SM_CHANNEL_") :].lower()
            if not any(existing.upper() == name.upper() for existing in found):
                found[name] = Path(path)
    for name, path in (training_env.get("channel_input_dirs") or {}).items():
        found.setdefault(str(name), Path(path))
    if not found and input_data_dir.is_dir():
        found = {p.name: p for p in sorted(input_data_dir.iterdir()) if p.is_dir()}
    return {name: path for name, path in found.items() if name.lower() not in SDK_CHANNELS}


def _hyperparameters(env: Mapping[str, str], training_env: dict[str, Any], config_dir: Path) -> dict[str, str]:
    values = _json(env.get("SM_HPS"), None)
    if not isinstance(values, dict):
        values = training_env.get("hyperparameters")
    if not isinstance(values, dict):
        path = config_dir / "hyperparameters.json"
        values = _json(path.read_text(encoding="utf-8"), {}) if path.is_file() else {}
    return {str(key): as_text(value) for key, value in values.items()}


def _reason(exc: BaseException) -> str:
    """One paragraph for FailureReason: the message, and for meldctl's own errors what to do."""
    if isinstance(exc, MeldError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


def _single_subfolder(folder: Path, marker: str) -> Path:
    """`folder`, or its only subfolder when the marker sits one level down (an uploaded `data/` folder)."""
    if (folder / marker).exists() or not folder.is_dir():
        return folder
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    if len(subfolders) == 1 and (subfolders[0] / marker).exists():
        return subfolders[0]
    return folder


def _weights_file(folder: Path) -> Path | None:
    if folder.is_file():
        return folder
    files = (
        sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES) if folder.is_dir() else []
    )
    return files[0] if files else None
