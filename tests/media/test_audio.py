from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from media_files import sine, write_colour_clip, write_sine_wav

from meldctl.errors import MediaError, NoStreamError
from meldctl.media.audio import log_mel_features, read_clip_audio, read_wav
from meldctl.model.config import PreprocessConfig


def _peak_hz(waveform: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.numpy()))
    return float(np.argmax(spectrum)) * rate / waveform.shape[0]


def test_read_wav_mono(tmp_path: Path) -> None:
    wave = read_wav(write_sine_wav(tmp_path / "a.wav", frequency=440, seconds=1.0), 16000)
    assert wave.shape == (16000,) and wave.dtype == torch.float32
    assert wave.abs().max().item() == pytest.approx(0.5, abs=0.01)
    assert _peak_hz(wave, 16000) == pytest.approx(440, abs=2)


def test_read_wav_averages_channels(tmp_path: Path) -> None:
    left, right = sine(440, 0.5, 16000), np.zeros(8000, np.float32)
    soundfile.write(str(tmp_path / "st.wav"), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wave = read_wav(tmp_path / "st.wav", 16000)
    assert wave.shape == (8000,)
    assert torch.allclose(wave, torch.from_numpy(left) / 2, atol=1e-6)


def test_read_wav_resamples(tmp_path: Path) -> None:
    wave = read_wav(write_sine_wav(tmp_path / "hi.wav", frequency=1000, seconds=1.0, rate=44100, channels=2), 16000)
    assert wave.shape == (16000,)
    assert _peak_hz(wave, 16000) == pytest.approx(1000, abs=2)


def test_read_wav_errors(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        read_wav(tmp_path / "missing.wav", 16000)
    (tmp_path / "empty.wav").touch()
    with pytest.raises(MediaError, match="empty"):
        read_wav(tmp_path / "empty.wav", 16000)
    (tmp_path / "text.wav").write_text("hello\n" * 50)
    with pytest.raises(MediaError, match="cannot read audio"):
        read_wav(tmp_path / "text.wav", 16000)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_read_clip_audio(tmp_path: Path, suffix: str) -> None:
    clip = write_colour_clip(tmp_path / f"clip{suffix}", num_frames=24, fps=12, audio=True)  # 2 s of 440 Hz
    wave = read_clip_audio(clip, 16000)
    assert wave.ndim == 1 and wave.dtype == torch.float32
    assert abs(wave.shape[0] - 32000) < 1600  # encoder padding may add a few ms
    assert _peak_hz(wave[4000:28000], 16000) == pytest.approx(440, abs=3)


def test_read_clip_audio_without_an_audio_stream(tmp_path: Path) -> None:
    clip = write_colour_clip(tmp_path / "silent.mp4", num_frames=5)
    with pytest.raises(NoStreamError, match="no audio stream"):
        read_clip_audio(clip, 16000)


def test_read_clip_audio_not_media(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"\x00\x01garbage" * 64)
    with pytest.raises(MediaError, match="cannot read the audio"):
        read_clip_audio(tmp_path / "x.mp4", 16000)


def test_clip_audio_is_bit_identical_to_the_prepared_wav(tmp_path: Path) -> None:
    """predict reads a clip's audio through the FFmpeg command that prepare writes its WAV with."""
    from meldctl.media.ffmpeg import extract_audio

    clip = write_colour_clip(tmp_path / "c.mkv", num_frames=15, audio=True)
    wav = extract_audio(clip, tmp_path / "c.wav")
    from_wav, from_clip = read_wav(wav, 16000), read_clip_audio(clip, 16000)
    assert torch.equal(from_wav, from_clip)
    preprocess = PreprocessConfig()
    assert torch.equal(log_mel_features(from_wav, preprocess), log_mel_features(from_clip, preprocess))


def test_max_seconds_reads_only_the_start(tmp_path: Path) -> None:
    clip = write_colour_clip(tmp_path / "c.mp4", num_frames=24, fps=12, audio=True)  # 2 s
    full, head = read_clip_audio(clip, 16000), read_clip_audio(clip, 16000, max_seconds=0.5)
    assert head.shape == (8000,) and torch.equal(head, full[:8000])
    wav = write_sine_wav(tmp_path / "a.wav", seconds=1.0)
    assert read_wav(wav, 16000, max_seconds=0.25).shape == (4000,)
