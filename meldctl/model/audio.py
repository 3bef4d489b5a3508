"""Audio encoder: a small trainable CNN over a log-Mel spectrogram, blind to padding.

Utterances differ in length, so a batch pads their spectrograms. Padding never reaches the embedding: the
input is normalised with statistics of the training split's valid frames (buffers, stored in the checkpoint),
every block's BatchNorm takes its batch statistics over valid positions only and zeroes the rest, and the
pooling averages valid positions only. An utterance's embedding is therefore the same in any window or batch
(tests/model/test_audio.py checks it).
"""

from __future__ import annotations

import torch
from torch import nn


def valid_lengths(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Valid time steps after `steps` stride-2 blocks (kernel 3, padding 1): ceil(length / 2) each time."""
    for _ in range(steps):
        lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
    return lengths


def time_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """`[B, 1, 1, frames]` float mask, 1 where a time step is inside its utterance."""
    steps = torch.arange(frames, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).to(torch.float32)[:, None, None, :]


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from valid (unpadded) positions only; padding stays zero."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training:
            return super().forward(x) * mask
        count = (mask.sum() * x.shape[2]).clamp(min=1.0)  # valid (frequency, time) cells over the batch
        mean = (x * mask).sum(dim=(0, 2, 3)) / count  # [C]
        var = (((x - mean[None, :, None, None]) * mask) ** 2).sum(dim=(0, 2, 3)) / count  # [C], biased
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * count / (count - 1).clamp(min=1.0)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(unbiased, self.momentum)
        normed = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        return (normed * self.weight[None, :, None, None] + self.bias[None, :, None, None]) * mask


class _Block(nn.Module):
    """Conv (stride 2 in time and frequency) -> masked BatchNorm -> ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        self.norm = MaskedBatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)  # [B, C, F/2, T/2]
        lengths = valid_lengths(lengths, 1)
        return torch.relu(self.norm(x, time_mask(lengths, x.shape[-1]))), lengths


class AudioEncoder(nn.Module):
    """Log-Mel `[B, 1, n_mels, frames]` with valid lengths `[B]` -> CNN -> masked mean pool -> projection.

    Trained end to end (the seed froze a randomly initialised CNN, which only added noise). Stride 2 in both
    axes keeps it at about 50 MMACs for 8 s of audio: cached epochs are dominated by this encoder.
    """

    feature_dim = 128
    inputs = ("audio",)
    """The batch keys that carry audio: log-Mel `audio` (with `audio_length`, valid frames per row)."""

    def __init__(self, projection_dim: int, n_mels: int = 64) -> None:
        super().__init__()
        # Per-band statistics of the training split's valid frames (set by `set_normalisation` before training).
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))
        widths = (1, 16, 32, 64, self.feature_dim)
        self.blocks = nn.ModuleList(_Block(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.projection = nn.Sequential(nn.Linear(self.feature_dim, projection_dim), nn.GELU())

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Use these per-band statistics `[n_mels]` (measured on the training split) to normalise inputs."""
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=1e-3))

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The projection `[B, P]` of a batch's `audio`; without `audio_length` every frame counts as valid."""
        mel = batch["audio"]  # [B, 1, n_mels, frames]
        lengths = batch.get("audio_length")
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[-1], device=mel.device)
        return self(mel, lengths)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, mel.shape[-1])  # [B, 1, 1, T]
        x = (mel - self.mel_mean[None, None, :, None]) / self.mel_std[None, None, :, None] * mask  # [B, 1, F, T]
        for block in self.blocks:
            x, lengths = block(x, lengths)  # [B, C, F', T'], padding zero
        weight = time_mask(lengths, x.shape[-1])  # [B, 1, 1, T']
        pooled = (x * weight).sum(dim=(2, 3)) / (weight.sum(dim=(2, 3)) * x.shape[2]).clamp(min=1.0)  # [B, 128]
        return self.projection(pooled)  # [B, P]
