"""Audio encoder: a small trainable CNN over a log-Mel spectrogram."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # Stride 2 in both axes: each block halves time and frequency, so the whole CNN costs about 50 MMACs for
    # 8 s of audio. Cached epochs are dominated by this encoder, so it has to stay this small.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class AudioEncoder(nn.Module):
    """Log-Mel `[B, 1, n_mels, frames]` -> CNN -> pooled 128-d -> projection.

    Trained end to end: the seed froze a randomly initialised CNN, which only added noise.
    """

    feature_dim = 128

    def __init__(self, projection_dim: int) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)  # log-Mel levels vary by recording; learn the scale
        self.cnn = nn.Sequential(
            _block(1, 16), _block(16, 32), _block(32, 64), _block(64, self.feature_dim), nn.AdaptiveAvgPool2d(1)
        )
        self.projection = nn.Sequential(nn.Linear(self.feature_dim, projection_dim), nn.GELU())

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        pooled = self.cnn(self.input_norm(mel)).flatten(1)  # [B, 128]
        return self.projection(pooled)  # [B, P]
