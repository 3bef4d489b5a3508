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

from meldctl.errors import MediaError
from meldctl.media.features import log_mel_features

__all__ = ["log_mel_features", "read_clip_audio", "read_wav"]

_BAD_AUDIO_HINT = "re-extract the audio (`meldctl prepare` rewrites missing or broken WAVs)"


def read_wav(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read a sound file (WAV, FLAC, OGG: whatever libsndfile reads) as mono at `sample_rate`.

    Channels are averaged; a different rate is resampled.

    Args:
        path: The sound file.
        sample_rate: Rate of the returned waveform, in Hz.

    Returns:
        float32 `[samples]`, values in [-1, 1].

    Raises:
        MediaError: the file is missing, empty, not audio, or holds no samples.
    """
    path = Path(path)
    _check_file(path)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # [samples, channels]
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise MediaError(f"cannot read audio {path}: {exc}", hint=_BAD_AUDIO_HINT) from None
    if data.shape[0] == 0:
        raise MediaError(f"audio file {path} holds no samples", hint=_BAD_AUDIO_HINT)
    waveform = torch.from_numpy(data).mean(dim=1)  # [samples]
    return _resample(waveform, rate, sample_rate)


def read_clip_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode the audio track of any container FFmpeg reads (mp4, mkv, webm, avi, mov, wav...) as mono.

    Args:
        path: The clip.
        sample_rate: Rate of the returned waveform, in Hz.

    Returns:
        float32 `[samples]`.

    Raises:
        MediaError: the file is missing, empty, not media, has no audio stream, or cannot be decoded.
    """
    path = Path(path)
    _check_file(path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(
                    f"{path} has no audio stream", hint="use a clip with sound, or leave audio out (--modalities)"
                )
            stream = container.streams.audio[0]
            # FFmpeg's resampler downmixes and converts in one pass, to packed float32 mono.
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))  # flush
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read the audio of {path}: {exc}", hint=_BAD_AUDIO_HINT) from None
    if not chunks:
        raise MediaError(f"the audio stream of {path} holds no samples", hint=_BAD_AUDIO_HINT)
    return torch.from_numpy(np.concatenate(chunks))  # [samples]


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
