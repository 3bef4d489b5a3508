"""FFmpeg at the edge: find the binary, probe a clip with PyAV, extract 16 kHz mono WAV with ffmpeg-python.

The argument lists are pure functions (tested without running anything); `probe_clip` and `extract_audio`
are the only functions here that touch files or start processes.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meldctl.errors import MediaError
from meldctl.io import atomic_path, disk_full

AUDIO_SAMPLE_RATE = 16000


@functools.cache
def ffmpeg_exe() -> str:
    """The FFmpeg binary: the system's `ffmpeg` when on PATH, else the one the `imageio-ffmpeg` wheel ships.

    The fallback is what makes `pip install meldctl` enough on a fresh machine with no FFmpeg.

    Raises:
        MediaError: neither is available.
    """
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise MediaError(
            f"no FFmpeg found ({exc})", hint="install FFmpeg (apt install ffmpeg) or pip install imageio-ffmpeg"
        ) from None


@dataclass(frozen=True)
class ClipInfo:
    """What a probe learned about one clip."""

    duration_s: float | None
    has_video: bool
    has_audio: bool


def _duration(container, streams: list) -> float | None:  # noqa: ANN001
    # The container's duration covers every stream; a stream's own is the fallback for odd muxers.
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # av.time_base is 1/1_000_000
    spans = [float(s.duration * s.time_base) for s in streams if s.duration is not None and s.time_base is not None]
    return max(spans) if spans else None


def probe_clip(path: Path) -> ClipInfo:
    """Open a clip with PyAV, read its streams and duration, and decode one frame.

    Decoding a frame (not only reading the header) is what catches clips like MELD's train dia125_utt3,
    whose container opens but whose data does not decode.

    Raises:
        MediaError: the file cannot be opened, has no audio or video stream, or no frame decodes.
    """
    import av

    try:
        with av.open(str(path)) as container:
            video, audio = list(container.streams.video), list(container.streams.audio)
            if not video and not audio:
                raise MediaError(f"{path}: no audio or video stream")
            duration = _duration(container, video + audio)
            stream = video[0] if video else audio[0]
            if next(iter(container.decode(stream)), None) is None:
                raise MediaError(f"{path}: no frame decodes")
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise MediaError(f"{path}: cannot decode ({_last_line(str(exc))})") from None
    return ClipInfo(duration_s=duration, has_video=bool(video), has_audio=bool(audio))


def audio_extract_args(
    clip: Path, output: Path | str, *, sample_rate: int = AUDIO_SAMPLE_RATE, exe: str = "ffmpeg", raw: bool = False
) -> list[str]:
    """The FFmpeg command that writes `clip`'s first audio stream as mono 16-bit PCM at `sample_rate`.

    `prepare` writes a WAV file; predict and analyze read the same samples from a pipe (`raw=True`: headerless
    s16le, `output` is `pipe:1`). Only the container differs, so the three give bit-identical samples. The
    format is named explicitly because the WAV is written to a temporary name that does not end in `.wav`.
    """
    import ffmpeg

    stream = ffmpeg.input(str(clip)).output(
        str(output), vn=None, sn=None, dn=None, ac=1, ar=sample_rate, acodec="pcm_s16le", f="s16le" if raw else "wav"
    )
    stream = stream.global_args("-nostdin", "-hide_banner", "-loglevel", "error").overwrite_output()
    return stream.compile(cmd=exe)


def pcm_stream(
    clip: Path, *, sample_rate: int = AUDIO_SAMPLE_RATE, chunk_samples: int = 1 << 16
) -> Iterator[np.ndarray]:
    """`clip`'s audio as int16 mono chunks `[<= chunk_samples]`, decoded by FFmpeg exactly as `extract_audio` does.

    Memory stays at one chunk whatever the clip's length; closing the generator early stops FFmpeg, so a
    caller that needs only the first seconds pays only for those.

    Raises:
        MediaError: FFmpeg failed (no audio stream, not media); raised after the chunks it did produce.
    """
    args = audio_extract_args(Path(clip).absolute(), "pipe:1", sample_rate=sample_rate, exe=ffmpeg_exe(), raw=True)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished = False
    try:
        assert process.stdout is not None
        carry = b""
        while True:
            data = process.stdout.read(2 * chunk_samples)
            if not data:
                break
            data, carry = carry + data, b""
            if len(data) % 2:  # a pipe read may split a sample
                data, carry = data[:-1], data[-1:]
            yield np.frombuffer(data, dtype="<i2")
        finished = True
    finally:
        if not finished:
            process.kill()
        stderr = process.stderr.read() if process.stderr is not None else b""
        code = process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    if code != 0:
        reason = _last_line(stderr.decode("utf-8", "replace")) or f"exit code {code}"
        raise MediaError(f"{clip}: FFmpeg could not decode the audio ({reason})")


def extract_audio(clip: Path, wav: Path, *, sample_rate: int = AUDIO_SAMPLE_RATE, timeout_s: float = 120.0) -> Path:
    """Write `clip`'s audio to `wav` (mono, `sample_rate` Hz), atomically, killing FFmpeg after `timeout_s`.

    Returns:
        The path of the WAV.

    Raises:
        MediaError: FFmpeg failed or ran past the timeout; no file is left at `wav` in either case.
        DiskFullError: the folder of `wav` is full (not a fault of the clip).
    """
    clip, wav = Path(clip).absolute(), Path(wav).absolute()
    with atomic_path(wav) as tmp:
        args = audio_extract_args(clip, tmp, sample_rate=sample_rate, exe=ffmpeg_exe())
        try:
            done = subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise MediaError(f"{clip}: FFmpeg audio extraction ran past {timeout_s:g} s") from None
        if done.returncode != 0:
            stderr = done.stderr.decode("utf-8", "replace")
            if "No space left on device" in stderr or "Disk quota exceeded" in stderr:
                # Not the clip's fault: the whole command stops, and the clip is not recorded as broken.
                raise disk_full(wav.parent, f"the audio of {clip.name}")
            reason = _last_line(stderr) or f"exit code {done.returncode}"
            raise MediaError(f"{clip}: FFmpeg audio extraction failed ({reason})")
    return wav


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
