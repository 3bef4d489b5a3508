"""Pure tensor functions that turn decoded media into model inputs.

No I/O here: `video.py` and `audio.py` decode, these functions sample, normalise and transform. Train, eval
and predict all go through them, so a model always sees inputs prepared the way it was trained on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torchaudio

from meldctl.errors import MediaError
from meldctl.model.config import PreprocessConfig

# Power below this is silence or padding; the floor keeps log() finite and bounds the dynamic range.
LOG_MEL_FLOOR = 1e-6


def uniform_frame_indices(total: int, num_frames: int) -> list[int]:
    """Indices of `num_frames` frames spread uniformly across a clip of `total` frames.

    Each index is the centre of one of `num_frames` equal segments of the whole clip (not the first
    `num_frames` frames), so a 2 s clip and a 20 s clip both cover start to end. A clip shorter than
    `num_frames` repeats frames rather than padding with zeros.

    Args:
        total: Frames in the clip, at least 1.
        num_frames: Frames to keep, at least 1.

    Returns:
        `num_frames` non-decreasing indices in `[0, total)`.
    """
    if total < 1 or num_frames < 1:
        raise ValueError(f"need total >= 1 and num_frames >= 1, got total={total}, num_frames={num_frames}")
    # Integer arithmetic: floor((k + 0.5) * total / num_frames) with no float rounding at segment edges.
    return [((2 * k + 1) * total) // (2 * num_frames) for k in range(num_frames)]


def uniform_timestamps(start: float, duration: float, num_frames: int) -> list[float]:
    """Times (same unit as `start` and `duration`) at the centres of `num_frames` equal segments.

    The time-based twin of `uniform_frame_indices`: for a constant frame rate, the frame shown at each
    timestamp is the frame that `uniform_frame_indices` picks; for a variable frame rate, it samples
    uniformly in time, which is what the viewer sees.

    Args:
        start: Time of the first frame.
        duration: Length of the clip, > 0.
        num_frames: Timestamps to return, at least 1.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return [start + (k + 0.5) * duration / num_frames for k in range(num_frames)]


def normalize_frames(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB frames as decoded -> the float, channel-first, normalised clip the video encoder takes.

    Args:
        frames: uint8 `[T, H, W, 3]`, RGB order.
        mean: Per-channel mean on the 0-1 scale (Kinetics for R3D-18).
        std: Per-channel standard deviation on the 0-1 scale.

    Returns:
        float32 `[3, T, H, W]`.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {tuple(frames.shape)}")
    clip = frames.permute(3, 0, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)  # [3, T, H, W]
    # (x / 255 - mean) / std folded into one multiply and one add over the clip.
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).to(torch.float32).view(3, 1, 1, 1)
    shift = (-torch.tensor(mean, dtype=torch.float64) / std_t).to(torch.float32).view(3, 1, 1, 1)
    return clip.mul_(scale).add_(shift)  # [3, T, H, W]


@functools.lru_cache(maxsize=8)
def mel_transform(sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    """The Mel spectrogram module for these parameters, built once per process (filterbank and window)."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0
    )


def log_mel_features(waveform: torch.Tensor, preprocess: PreprocessConfig) -> torch.Tensor:
    """A mono waveform -> the log-Mel spectrogram of the utterance's own length (at most `audio_seconds`).

    The spectrogram is computed on the utterance alone, never on padding: batches pad it afterwards and the
    audio encoder masks the padding, so an utterance's features do not depend on how long its batch's
    window is. Normalisation (training-split statistics) happens in the audio encoder.

    Args:
        waveform: float `[samples]` at `preprocess.sample_rate`, values in [-1, 1].
        preprocess: Mel parameters and the longest span used.

    Returns:
        float32 `[1, n_mels, frames]`, `frames = samples // hop_length + 1` for the kept samples.

    Raises:
        MediaError: fewer samples than one FFT window: there is no usable audio.
    """
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got {tuple(waveform.shape)}")
    kept = waveform[: preprocess.audio_samples].to(torch.float32)  # [samples]
    if kept.shape[0] < preprocess.n_fft:
        seconds = preprocess.n_fft / preprocess.sample_rate
        raise MediaError(f"the audio is shorter than one {seconds * 1000:.0f} ms analysis window")
    transform = mel_transform(preprocess.sample_rate, preprocess.n_fft, preprocess.hop_length, preprocess.n_mels)
    with torch.no_grad():
        mel = transform(kept)  # [n_mels, frames]
    return mel.clamp_(min=LOG_MEL_FLOOR).log_().unsqueeze(0)  # [1, n_mels, frames]


def pad_frames(mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad (or crop) a log-Mel spectrogram `[1, n_mels, t]` to `[1, n_mels, frames]` for batching."""
    if mel.shape[-1] >= frames:
        return mel[..., :frames]
    return torch.nn.functional.pad(mel, (0, frames - mel.shape[-1]))
