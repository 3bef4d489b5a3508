"""Video encoder: torchvision R3D-18 (Kinetics-400 weights by default), 512-d pooled, then a projection."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.video import R3D_18_Weights, r3d_18

from meldctl.errors import MeldError
from meldctl.model.pretrained import PretrainedEncoder

FEATURE_DIM = 512


def build_r3d18(weights: str, *, pretrained: bool = True) -> nn.Module:
    """R3D-18 with its classifier removed, so that it returns the 512-d pooled features.

    Args:
        weights: `kinetics400`, `none`, or a local state-dict file.
        pretrained: False builds the bare architecture (a checkpoint supplies the weights).

    Raises:
        MeldError: offline without a local copy, or a weights file that does not fit.
    """
    backbone = r3d_18(weights=None)
    if pretrained and weights == "kinetics400":
        try:
            state = R3D_18_Weights.KINETICS400_V1.get_state_dict(progress=False)
        except Exception as exc:  # urllib raises several kinds when offline
            raise MeldError(
                f"cannot download the R3D-18 Kinetics-400 weights: {exc}",
                hint="offline? download r3d_18-b3b3357e.pth elsewhere and pass --video-weights PATH "
                "(setting model.video_weights), or --video-weights none",
            ) from None
        backbone.load_state_dict(state)
    elif pretrained and weights != "none":
        backbone.load_state_dict(_load_local_weights(Path(weights)))
    backbone.fc = nn.Identity()
    return backbone


def _load_local_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MeldError(
            f"video weights file {path} does not exist",
            hint="--video-weights takes kinetics400, none, or the path of an r3d_18 state dict (.pth)",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MeldError(f"{path} is not a loadable R3D-18 state dict: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    expected = set(r3d_18(weights=None).state_dict())
    if not isinstance(state, dict) or not expected <= set(state):
        raise MeldError(f"{path} does not hold R3D-18 weights (keys do not match torchvision's r3d_18)")
    return {k: v for k, v in state.items() if k in expected}


class VideoEncoder(PretrainedEncoder):
    """R3D-18 backbone -> projection. `features()` is the frozen, cacheable part."""

    inputs = ("video", "video_features")
    """The batch keys that carry video: clips `[B, C, T, H, W]`, or cached `features()` `[B, 512]`."""
    pretrained_attr = "backbone"

    def __init__(self, backbone: nn.Module, projection_dim: int, frozen: bool) -> None:
        super().__init__()
        # Channels-last 3D: about 15% less CPU for R3D-18's convolutions (benchmarks/bench_predict.py), and the
        # layout cuDNN prefers under autocast; the weights and their hash are the same.
        self.backbone = backbone.to(memory_format=torch.channels_last_3d)
        self.feature_dim = FEATURE_DIM
        self.projection = nn.Sequential(nn.Linear(FEATURE_DIM, projection_dim), nn.GELU())
        self.set_frozen(frozen)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The projection `[B, P]` of a batch's cached `video_features`, or of its `video` clips."""
        features = batch.get("video_features")
        if features is None:
            features = self.features(batch["video"])
        return self.project(features)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features `[B, 512]` for normalised clips `[B, C, T, H, W]`."""
        with self.pretrained_grad():
            return self.backbone(video.contiguous(memory_format=torch.channels_last_3d))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features `[B, 512]` -> the trainable projection `[B, P]`."""
        return self.projection(features)  # [B, P]
