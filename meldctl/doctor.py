"""`meldctl doctor`: what each command needs, and whether this machine has it. Reads only; no network.

| check | needed by |
| --- | --- |
| FFmpeg (the binary meldctl will run) | prepare, train, eval, predict |
| CUDA and the GPUs | train (a warning on CPU; required with `train.device = cuda`) |
| text encoder and video weights, in their caches | train |
| free disk space under the data folder | prepare, train |
| AWS region and credentials (never a secret) | remote (`train --remote`, `logs`) |
| the SageMaker SDK extra | remote |

A check is `ok`, `warn` (works, with a caveat) or `missing`. Weights that are not cached are a warning, as the
first run downloads them, unless `HF_HUB_OFFLINE` says there is no network: then they are missing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meldctl.settings import Settings

Status = Literal["ok", "warn", "missing"]
COMMANDS = ("prepare", "train", "eval", "predict", "remote")
MIN_FREE_GB = 2.0  # less than this and even the embedded sample's clips, audio and cache may not fit
FULL_MELD_GB = 25.0  # MELD.Raw.tar.gz (10 GB), its clips (10 GB), 16 kHz audio and the feature cache


@dataclass(frozen=True)
class Check:
    """One thing a command needs: whether it is there, what was found, and which commands need it."""

    name: str
    status: Status
    detail: str
    needed_by: tuple[str, ...]


def run_checks(settings: Settings) -> list[Check]:
    """Every check, for the resolved settings (data folder, weights, device, region)."""
    return [
        check_ffmpeg(),
        check_gpu(settings.train.device),
        *check_weights(settings.model.text_model, settings.model.video_weights, settings.model.modalities),
        check_disk(settings.data.data_dir),
        check_aws(settings.remote.region),
        check_sagemaker(),
    ]


def missing_for(checks: list[Check], command: str) -> list[Check]:
    """The checks that are missing and that `command` needs."""
    return [check for check in checks if check.status == "missing" and command in check.needed_by]


def check_ffmpeg() -> Check:
    """The FFmpeg meldctl runs: the system's on PATH, else the one the imageio-ffmpeg wheel ships."""
    needed_by = ("prepare", "train", "eval", "predict")
    found = shutil.which("ffmpeg")
    if found:
        return Check("ffmpeg", "ok", f"{found} (on PATH)", needed_by)
    try:
        import imageio_ffmpeg

        wheel = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return Check("ffmpeg", "missing", "none on PATH, no imageio-ffmpeg: apt install ffmpeg", needed_by)
    if not os.access(wheel, os.X_OK):  # IMAGEIO_FFMPEG_EXE may name anything
        return Check("ffmpeg", "missing", f"none on PATH, and {wheel} (imageio-ffmpeg's) cannot run", needed_by)
    return Check("ffmpeg", "ok", f"{wheel} (no ffmpeg on PATH: imageio-ffmpeg's)", needed_by)


def check_gpu(device: str) -> Check:
    """CUDA and the GPUs torch sees; CPU only is a warning unless `device` is cuda."""
    import torch

    if not torch.cuda.is_available():
        status: Status = "missing" if device == "cuda" else "warn"
        return Check(
            "cuda", status, f"no GPU visible to torch {torch.__version__}: training runs on the CPU", ("train",)
        )
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Check("cuda", "ok", f"CUDA {torch.version.cuda}: {names}", ("train",))


def check_weights(text_model: str, video_weights: str, modalities: list[str]) -> list[Check]:
    """The text encoder and video weights that `train` would load, if the model uses them."""
    from huggingface_hub import constants

    from meldctl.weights import text_status, video_status

    found = []
    for modality, status in (("text", text_status(text_model)), ("video", video_status(video_weights))):
        if modality not in modalities:
            continue
        where = f" at {status.path}" if status.path else ""
        if status.present:
            found.append(Check(f"{modality} weights", "ok", f"{status.name}: {status.detail}{where}", ("train",)))
            continue
        offline = bool(constants.HF_HUB_OFFLINE)
        detail = f"{status.name}: {status.detail}; " + (
            "HF_HUB_OFFLINE is set: run `meldctl weights fetch` where there is internet, or pass a local copy"
            if offline
            else "downloaded at first use, or now with `meldctl weights fetch`"
        )
        found.append(Check(f"{modality} weights", "missing" if offline else "warn", detail, ("train",)))
    return found


def check_disk(data_dir: Path) -> Check:
    """Free space where the data folder is (or would be created)."""
    folder = Path(data_dir).resolve()
    while not folder.exists():
        folder = folder.parent
    free_gb = shutil.disk_usage(folder).free / 1e9
    detail = f"{free_gb:.1f} GB free under {folder}"
    if free_gb < MIN_FREE_GB:
        return Check("disk", "missing", f"{detail}; free some space", ("prepare", "train"))
    if free_gb < FULL_MELD_GB:
        return Check("disk", "warn", f"{detail}; full MELD needs about {FULL_MELD_GB:.0f} GB", ("prepare", "train"))
    return Check("disk", "ok", detail, ("prepare", "train"))


def check_aws(region: str | None) -> Check:
    """The AWS region and where the credentials come from (never the keys themselves)."""
    from meldctl.remote.aws import identity

    found = identity(region)
    if found.problem:
        return Check("aws", "missing", found.problem, ("remote",))
    if found.credentials is None:
        return Check("aws", "missing", "no AWS credentials: run `aws configure` (or `aws sso login`)", ("remote",))
    if found.region is None:
        return Check("aws", "missing", "no AWS region: pass --region or set AWS_DEFAULT_REGION", ("remote",))
    profile = f", profile {found.profile}" if found.profile not in (None, "default") else ""
    return Check("aws", "ok", f"region {found.region}, credentials from {found.credentials}{profile}", ("remote",))


def check_sagemaker() -> Check:
    """The SageMaker Python SDK (the optional extra), looked up without importing it."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("sagemaker") is None:
        return Check("sagemaker sdk", "missing", "pip install 'meldctl[sagemaker]'", ("remote",))
    return Check("sagemaker sdk", "ok", f"sagemaker {importlib.metadata.version('sagemaker')}", ("remote",))
