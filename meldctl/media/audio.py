"""Read audio as a mono float waveform at the model's sample rate, and turn it into log-Mel features.

`read_wav` reads the 16 kHz WAVs that `meldctl prepare` extracts; `read_clip_audio` decodes the audio
track of a raw clip (predict on a user's mp4) so that no WAV needs to be written first. Both give the
same `[samples]` tensor that `log_mel_features` takes.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile
import torch
import torchaudio

from meldctl.errors import MediaError, NoStreamError
from meldctl.media.features import log_mel_features

__all__ = ["log_mel_features", "pcm16_to_float", "read_clip_audio", "read_wav"]

_BAD_AUDIO_HINT = "re-extract the audio (`meldctl prepare` rewrites missing or broken WAVs)"


def pcm16_to_float(samples: np.ndarray) -> torch.Tensor:
    """16-bit PCM -> float32 in [-1, 1): the one conversion every audio path uses (as libsndfile does it)."""
    return torch.from_numpy(samples.astype(np.float32) * np.float32(1 / 32768))  # [samples]


def read_wav(path: str | Path, sample_rate: int, *, max_seconds: float | None = None) -> torch.Tensor:
    """Read a sound file (WAV, FLAC, OGG: whatever libsndfile reads) as mono at `sample_rate`.

    16-bit PCM (what `meldctl prepare` writes) is converted with `pcm16_to_float`, exactly as predict converts
    FFmpeg's output; channels are averaged; a different rate is resampled.

    Args:
        path: The sound file.
        sample_rate: Rate of the returned waveform, in Hz.
        max_seconds: Read only this many seconds from the start.

    Returns:
        float32 `[samples]`, values in [-1, 1].

    Raises:
        MediaError: the file is missing, empty, not audio, or holds no samples.
    """
    path = Path(path)
    _check_file(path)
    try:
        with soundfile.SoundFile(str(path)) as sound:
            frames = -1 if max_seconds is None else int(max_seconds * sound.samplerate)
            pcm16 = sound.subtype == "PCM_16"
            data = sound.read(frames, dtype="int16" if pcm16 else "float32", always_2d=True)  # [samples, channels]
            rate = sound.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise MediaError(f"cannot read audio {path}: {exc}", hint=_BAD_AUDIO_HINT) from None
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} holds no samples", hint=_BAD_AUDIO_HINT)
    if data.shape[1] == 1:
        waveform = pcm16_to_float(data[:, 0]) if pcm16 else torch.from_numpy(data[:, 0].copy())
    else:
        waveform = (pcm16_to_float(data) if pcm16 else torch.from_numpy(data)).mean(dim=1)  # [samples]
    return _resample(waveform, rate, sample_rate)


def read_clip_audio(path: str | Path, sample_rate: int, *, max_seconds: float | None = None) -> torch.Tensor:
    """Decode the audio track of any container FFmpeg reads (mp4, mkv, webm, avi, mov, wav...) as mono.

    The samples come from the same FFmpeg command that `meldctl prepare` uses to write its WAVs, read through
    a pipe, so a clip gives bit-identical audio here and in training. Decoding stops after `max_seconds`: a
    clip hours long costs only the span the model uses.

    Args:
        path: The clip.
        sample_rate: Rate of the returned waveform, in Hz.
        max_seconds: Decode only this many seconds from the start.

    Returns:
        float32 `[samples]`.

    Raises:
        MediaError: the file is missing, empty, not media, has no audio stream, or cannot be decoded.
    """
    from meldctl.media.ffmpeg import pcm_stream

    path = Path(path)
    _check_file(path)
    if not _has_audio_stream(path):
        raise NoStreamError(
            f"{path} has no audio stream", hint="use a clip with sound, or leave audio out (--modalities)"
        )
    wanted = None if max_seconds is None else int(max_seconds * sample_rate)
    chunks, count = [], 0
    stream = pcm_stream(path, sample_rate=sample_rate)
    try:
        for chunk in stream:
            chunks.append(chunk)
            count += len(chunk)
            if wanted is not None and count >= wanted:
                break
    finally:
        stream.close()
    if count == 0:
        raise NoStreamError(f"the audio stream of {path} holds no samples", hint=_BAD_AUDIO_HINT)
    samples = np.concatenate(chunks)
    return pcm16_to_float(samples if wanted is None else samples[:wanted])  # [samples]


def _has_audio_stream(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot read the audio of {path}: {exc}", hint=_BAD_AUDIO_HINT) from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"audio file {path} does not exist", hint=_BAD_AUDIO_HINT)
    if not path.is_file():
        raise MediaError(f"audio file {path} is not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"audio file {path} is empty (0 bytes)", hint=_BAD_AUDIO_HINT)


def _resample(waveform: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    if rate == sample_rate:
        return waveform  # [samples]
    return torchaudio.functional.resample(waveform, orig_freq=rate, new_freq=sample_rate)  # [samples']
