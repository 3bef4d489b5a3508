"""Tiny real media files for the media tests, written with PyAV (no system FFmpeg needed).

The colour clip encodes each frame's index in its red channel, so a test can tell which frames were kept
and whether the channels came out RGB.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile

# Frame i is a flat (RED0 + RED_STEP * i, GREEN, BLUE): red tells the index, green/blue tell RGB from BGR.
RED0, RED_STEP, GREEN, BLUE = 12, 10, 100, 20

# Video and audio codecs each container accepts, all encoders that PyAV's bundled FFmpeg ships.
CODECS = {
    ".mp4": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".webm": ("libvpx", "libopus"),
    ".avi": ("mpeg4", "mp3"),
}


def frame_colour(index: int) -> tuple[int, int, int]:
    return RED0 + RED_STEP * index, GREEN, BLUE


def frame_index(red: float) -> int:
    """The frame index whose colour has this red level (lossy codecs move it by a few levels)."""
    return round((red - RED0) / RED_STEP)


def write_colour_clip(
    path: Path,
    *,
    num_frames: int = 24,
    fps: int = 15,
    width: int = 64,
    height: int = 48,
    audio: bool = False,
    times: list[float] | None = None,
    gop: int | None = None,
) -> Path:
    """Write a clip whose frame i is flat `frame_colour(i)`.

    Args:
        path: Output; its suffix picks the container and codecs (see `CODECS`).
        num_frames: Frames in the clip (at most 24, so red stays in range).
        fps: Constant frame rate, ignored when `times` is given.
        width: Frame width.
        height: Frame height.
        audio: Add a 440 Hz mono sine track as long as the video.
        times: Presentation time of each frame in seconds, for a variable frame rate (mkv/mp4 only).
        gop: Keyframe interval in frames (default: the encoder's).
    """
    video_codec, audio_codec = CODECS[path.suffix]
    if times is not None:
        num_frames = len(times)
    with av.open(str(path), "w") as container:
        # Every stream must exist before the first packet is muxed (the header is written then).
        stream = _add_video_stream(container, video_codec, fps, width, height, gop, vfr=times is not None)
        sound = None
        if audio:
            sound = container.add_stream(audio_codec, rate=48000 if audio_codec == "libopus" else 44100, layout="mono")
        for i in range(num_frames):
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[:] = frame_colour(i)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            else:
                frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            _encode_sine(container, sound, (times[-1] + 0.1) if times is not None else num_frames / fps)
    return path


def _add_video_stream(
    container: av.container.OutputContainer, codec: str, fps: int, width: int, height: int, gop: int | None, vfr: bool
) -> av.video.stream.VideoStream:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        stream.options = {"qp": "0", "preset": "ultrafast"}  # lossless: colours survive
    elif codec == "libvpx":
        stream.options = {"crf": "4", "b": "2M", "deadline": "realtime"}
    else:  # mpeg4: near-lossless, so flat colours stay exact
        stream.codec_context.qmin = stream.codec_context.qmax = 2
    if gop is not None:
        stream.codec_context.gop_size = gop
    if vfr:
        stream.codec_context.time_base = Fraction(1, 1000)
    return stream


def _encode_sine(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    samples = sine(440.0, seconds, rate)
    chunk = 1024
    for start in range(0, samples.shape[0], chunk):
        part = samples[start : start + chunk].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 `[samples]` sine."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_sine_wav(path: Path, *, frequency: float = 440.0, seconds: float = 1.0, rate: int = 16000, channels: int = 1):
    """A 16-bit PCM WAV of a sine (the same in every channel)."""
    samples = np.repeat(sine(frequency, seconds, rate)[:, None], channels, axis=1)  # [samples, channels]
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return path


def write_textured_clip(path: Path, *, width: int, height: int, num_frames: int, fps: int = 15) -> Path:
    """A clip of smooth random texture with detail at every scale (a geometry test needs more than flat colour)."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(num_frames):
            coarse = rng.random((height // 8 + 1, width // 8 + 1, 3))
            pixels = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width] * 160 + rng.random((height, width, 3)) * 60
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_split_clip(path: Path, *, width: int = 96, height: int = 64, num_frames: int = 4, fps: int = 15) -> Path:
    """A clip whose left half is bright and right half dark, to see which way a rotation turned it."""
    pixels = np.full((height, width, 3), 30, dtype=np.uint8)
    pixels[:, : width // 2] = 220
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
