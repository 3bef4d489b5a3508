from __future__ import annotations

import math

import pytest
import torch

from meldctl.errors import MediaError
from meldctl.media.features import (
    log_mel_features,
    mel_transform,
    normalize_frames,
    pad_frames,
    uniform_frame_indices,
    uniform_timestamps,
)
from meldctl.model.config import PreprocessConfig


def test_frame_indices_span_the_whole_clip() -> None:
    indices = uniform_frame_indices(300, 16)
    assert len(indices) == 16
    assert indices[0] == 9 and indices[-1] == 290  # segment centres, not the first 16 frames
    gaps = {b - a for a, b in zip(indices, indices[1:], strict=False)}
    assert gaps <= {18, 19}


def test_frame_indices_exact_for_a_30_frame_clip() -> None:
    assert uniform_frame_indices(30, 16) == [0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 19, 21, 23, 25, 27, 29]
    assert uniform_frame_indices(16, 16) == list(range(16))


def test_short_clip_repeats_frames() -> None:
    indices = uniform_frame_indices(5, 16)
    assert len(indices) == 16
    assert indices == sorted(indices) and set(indices) == set(range(5))


@pytest.mark.parametrize(("total", "num_frames"), [(0, 16), (10, 0)])
def test_frame_indices_reject_empty(total: int, num_frames: int) -> None:
    with pytest.raises(ValueError):
        uniform_frame_indices(total, num_frames)


def test_timestamps_are_segment_centres() -> None:
    assert uniform_timestamps(1.0, 2.0, 4) == pytest.approx([1.25, 1.75, 2.25, 2.75])


def test_normalize_frames_layout_and_values() -> None:
    frames = torch.zeros(4, 6, 5, 3, dtype=torch.uint8)  # [T, H, W, 3]
    frames[..., 0] = 255  # pure red
    frames[2, 1, 3] = torch.tensor([10, 20, 30], dtype=torch.uint8)
    mean, std = (0.4, 0.3, 0.2), (0.25, 0.5, 0.125)
    clip = normalize_frames(frames, mean, std)
    assert clip.shape == (3, 4, 6, 5) and clip.dtype == torch.float32 and clip.is_contiguous()
    assert clip[0, 0, 0, 0].item() == pytest.approx((1.0 - 0.4) / 0.25)
    assert clip[1, 0, 0, 0].item() == pytest.approx((0.0 - 0.3) / 0.5)
    expected = [(v / 255 - m) / s for v, m, s in zip((10, 20, 30), mean, std, strict=True)]
    assert clip[:, 2, 1, 3].tolist() == pytest.approx(expected, abs=1e-5)


def test_normalize_frames_rejects_channel_first() -> None:
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        normalize_frames(torch.zeros(3, 4, 8, 8, dtype=torch.uint8), (0.5,) * 3, (0.5,) * 3)


def _sine(frequency: float, seconds: float, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * math.pi * frequency * t)).to(torch.float32)  # [samples]


@pytest.mark.parametrize(("seconds", "frames"), [(0.5, 51), (3.0, 301), (12.0, 801)])
def test_log_mel_covers_the_utterance_up_to_the_window(seconds: float, frames: int) -> None:
    preprocess = PreprocessConfig()  # 8 s window, 10 ms hops
    mel = log_mel_features(_sine(440, seconds), preprocess)
    assert mel.shape == (1, preprocess.n_mels, frames)
    assert frames <= preprocess.audio_frames == 801
    assert torch.isfinite(mel).all()


def test_log_mel_does_not_depend_on_the_window_length() -> None:
    wave = _sine(440, 1.5)
    short, long = PreprocessConfig(audio_seconds=2.0), PreprocessConfig(audio_seconds=8.0)
    assert torch.equal(log_mel_features(wave, short), log_mel_features(wave, long))


def test_pad_frames_pads_with_zeros_and_crops() -> None:
    mel = torch.ones(1, 4, 5)
    padded = pad_frames(mel, 8)
    assert padded.shape == (1, 4, 8) and padded[..., 5:].abs().sum() == 0 and torch.equal(padded[..., :5], mel)
    assert pad_frames(mel, 3).shape == (1, 4, 3)


def test_audio_shorter_than_one_window_is_no_audio() -> None:
    with pytest.raises(MediaError, match="shorter than one 25 ms"):
        log_mel_features(torch.zeros(100), PreprocessConfig())


def test_log_mel_peak_follows_the_pitch() -> None:
    preprocess = PreprocessConfig(audio_seconds=1.0)
    low = log_mel_features(_sine(300, 1.0), preprocess)[0].mean(dim=1).argmax().item()
    high = log_mel_features(_sine(3000, 1.0), preprocess)[0].mean(dim=1).argmax().item()
    assert high > low + 10


def test_mel_transform_is_built_once() -> None:
    assert mel_transform(16000, 400, 160, 64) is mel_transform(16000, 400, 160, 64)
    assert mel_transform(16000, 400, 160, 64) is not mel_transform(16000, 400, 160, 32)
