"""Stream a long video once: the frames and audio of many utterances, with memory that does not grow with its length.

`meldctl analyze` classifies hundreds of utterances of one episode. Cutting each span to a file (one FFmpeg
process per utterance) decodes the video again for every cut; this module reads it once instead:

- frames: one PyAV pass over the video stream. A demux-only scan (no decoding) learns every frame's
  timestamp and the keyframes; then the decoder runs forward, seeking only past stretches that hold no wanted
  frame, skipping frames nothing references unless they are wanted, and converting only the frames on screen
  at each utterance's `uniform_timestamps` (through one `FrameConverter`, the model's geometry).
- audio: one `pcm_stream` (the FFmpeg command `prepare` and `predict` use) over the whole file, of which
  `AudioReader` keeps only a rolling window: the span still needed.

Times are seconds from the start of the container (what a player and a subtitle file call 0:00).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from meldctl.errors import MediaError
from meldctl.media.video import decode_from
from meldctl.model.config import PreprocessConfig

_NOT_MEDIA_HINT = "pass a video file (mp4, mkv, webm, avi, mov); `ffprobe FILE` shows what FFmpeg sees in it"


@dataclass(frozen=True)
class VideoInfo:
    """What opening a file (without decoding it) tells about it.

    Attributes:
        path: The file.
        duration_s: Length of the longest stream, in seconds.
        has_video: It has a video stream (cover art does not count).
        has_audio: It has an audio stream.
        audio_offset_s: Time at which the first audio sample plays (0 unless the audio starts late).
    """

    path: Path
    duration_s: float
    has_video: bool
    has_audio: bool
    audio_offset_s: float = 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """Open `path` with PyAV and read its streams and duration.

    Raises:
        MediaError: the file is missing, empty, not media, or has neither a video nor an audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video {path} does not exist" if not path.exists() else f"{path} is not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"video {path} is empty (0 bytes)", hint=_NOT_MEDIA_HINT)
    try:
        with av.open(str(path)) as container:
            video = _video_streams(container)
            audio = list(container.streams.audio)
            if not video and not audio:
                raise MediaError(f"{path} holds no video or audio stream", hint=_NOT_MEDIA_HINT)
            start = _container_start(container)
            duration = _duration(container, video + audio, start)
            offset = 0.0
            if audio and audio[0].start_time is not None:
                offset = max(0.0, float(audio[0].start_time * audio[0].time_base) - start)
    except av.FFmpegError as exc:
        raise MediaError(f"{path} is not a video FFmpeg can read ({_reason(exc)})", hint=_NOT_MEDIA_HINT) from None
    if duration is None or duration <= 0:
        raise MediaError(f"{path}: FFmpeg reports no duration", hint=_NOT_MEDIA_HINT)
    return VideoInfo(path, duration, bool(video), bool(audio), offset)


def _video_streams(container: av.container.InputContainer) -> list:
    # Cover art (an mp3's or m4a's picture) is a one-frame "video" stream, not a picture track.
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def _container_start(container: av.container.InputContainer) -> float:
    return container.start_time / 1_000_000 if container.start_time is not None else 0.0  # av.time_base is 1/10^6


def _duration(container: av.container.InputContainer, streams: list, start: float) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    spans = [
        float((s.start_time or 0) * s.time_base) - start + float(s.duration * s.time_base)
        for s in streams
        if s.duration is not None and s.time_base is not None
    ]
    return max(spans) if spans else None


def _reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


class AudioReader:
    """A file's audio track read forward through one `pcm_stream`, keeping only the samples still needed.

    Call `release(t)` when nothing before time `t` will be read again, then `read(start, end)`. The buffer
    holds only the samples from the last release to the furthest end read, so memory follows the longest
    span asked for, not the file's length. Use as a context manager (closing stops FFmpeg).

    Args:
        path: The media file.
        sample_rate: Rate of the samples, in Hz.
        offset_s: When the first sample plays (`VideoInfo.audio_offset_s`).
        chunk_samples: Samples per read from FFmpeg.
    """

    def __init__(self, path: Path, *, sample_rate: int, offset_s: float = 0.0, chunk_samples: int = 1 << 15) -> None:
        from meldctl.media.ffmpeg import pcm_stream

        self.sample_rate, self.offset_s = sample_rate, offset_s
        self._stream = pcm_stream(path, sample_rate=sample_rate, chunk_samples=chunk_samples)
        self._chunks: list[np.ndarray] = []
        self._first = 0  # sample index of the first buffered sample
        self._buffered = 0  # samples buffered
        self._keep_from = 0  # samples before this index are never read again
        self.exhausted = False

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        self._chunks.clear()

    @property
    def buffered_samples(self) -> int:
        """Samples held right now (what memory the reader uses)."""
        return self._buffered

    def _index(self, seconds: float) -> int:
        return max(0, round((seconds - self.offset_s) * self.sample_rate))

    def release(self, before_s: float) -> None:
        """Forget the samples before `before_s`: later reads start at or after it."""
        self._keep_from = max(self._keep_from, self._index(before_s))
        self._drop()

    def _drop(self) -> None:
        while self._chunks and self._first + len(self._chunks[0]) <= self._keep_from:
            self._first += len(self._chunks[0])
            self._buffered -= len(self._chunks[0])
            self._chunks.pop(0)

    def read(self, start_s: float, end_s: float) -> np.ndarray:
        """int16 samples `[n]` playing in `[start_s, end_s)`; shorter (or empty) where the track ends first.

        Raises:
            ValueError: `start_s` is before a released time.
            MediaError: FFmpeg failed to decode the audio.
        """
        start, end = self._index(start_s), self._index(end_s)
        if start < self._keep_from:
            raise ValueError(f"audio before {start_s:.3f} s was released")
        while self._first + self._buffered < end and not self.exhausted:
            chunk = next(self._stream, None)
            if chunk is None:
                self.exhausted = True
                break
            self._chunks.append(chunk)
            self._buffered += len(chunk)
            self._drop()
        return self._slice(start, end)

    def _slice(self, start: int, end: int) -> np.ndarray:
        parts, position = [], self._first
        for chunk in self._chunks:
            lo, hi = max(start - position, 0), min(end - position, len(chunk))
            if lo < hi:
                parts.append(chunk[lo:hi])
            position += len(chunk)
            if position >= end:
                break
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


@dataclass
class UtteranceMedia:
    """One span's decoded media, ready for `Predictor.prepare_media`.

    Attributes:
        index: Position of the span in the list given to `stream_utterances`.
        frames: `num_frames` uint8 RGB arrays `[H, W, 3]` (the model's geometry), or None without video.
        waveform: float32 mono `[samples]` at the model's rate (at most `max_audio_s`), or None without audio.
    """

    index: int
    frames: list[np.ndarray] | None
    waveform: torch.Tensor | None


def stream_utterances(
    info: VideoInfo,
    spans: Sequence[tuple[float, float]],
    preprocess: PreprocessConfig,
    *,
    video: bool = True,
    audio: bool = True,
    max_audio_s: float | None = None,
) -> Iterator[UtteranceMedia]:
    """Decode the frames and audio of every span in one pass over the file, in the order of `spans`.

    Args:
        info: The file, from `probe_video`.
        spans: (start, end) seconds of each utterance, sorted by start; they may overlap.
        preprocess: Frame count and geometry, sample rate.
        video: Decode frames (False, or a file without video, gives `frames=None`).
        audio: Decode audio (False, or a file without audio, gives `waveform=None`).
        max_audio_s: Keep at most this many seconds of each span's audio (the model reads no more), so an
            unusually long span costs no extra memory.

    Raises:
        MediaError: the video or audio cannot be decoded.
    """
    from meldctl.media.audio import pcm16_to_float

    if any(b[0] < a[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise ValueError("spans must be sorted by start")
    with contextlib.ExitStack() as stack:
        frames = None
        if video and info.has_video:
            frames = _span_frames(info.path, spans, preprocess)
            stack.callback(frames.close)
        reader = None
        if audio and info.has_audio:
            reader = AudioReader(info.path, sample_rate=preprocess.sample_rate, offset_s=info.audio_offset_s)
            stack.enter_context(reader)
        for index, (start, end) in enumerate(spans):
            waveform = None
            if reader is not None:
                reader.release(start)
                samples = reader.read(start, end if max_audio_s is None else min(end, start + max_audio_s))
                waveform = pcm16_to_float(samples) if len(samples) else None  # [samples]
            yield UtteranceMedia(index, next(frames) if frames is not None else None, waveform)


@dataclass(frozen=True)
class _Index:
    """What demuxing the video stream (without decoding) tells: every frame's pts, sorted, and the keyframes."""

    pts: np.ndarray  # int64 [frames], presentation order
    keyframes: np.ndarray  # int64 [keyframes], sorted


def _span_frames(
    path: Path, spans: Sequence[tuple[float, float]], preprocess: PreprocessConfig
) -> Iterator[list[np.ndarray]]:
    """Each span's `num_frames` frames in span order (repeats share one array), from one decoding pass."""
    from meldctl.media.features import uniform_timestamps
    from meldctl.media.video import FrameConverter

    try:
        with av.open(str(path)) as container:
            stream = _video_streams(container)[0]
            index = _scan(container, stream, path)
            origin = _container_start(container)
            tb = float(stream.time_base)
            times = index.pts * tb - origin  # [frames] seconds on the file's clock
            wanted: list[list[int]] = []  # per span, the pts of the frame on screen at each sample time
            for start, end in spans:
                targets = np.asarray(uniform_timestamps(start, max(end - start, 1e-3), preprocess.num_frames))
                at = np.clip(np.searchsorted(times, targets, side="right") - 1, 0, len(times) - 1)
                wanted.append(index.pts[at].tolist())
            stream.codec_context.thread_type = "AUTO"  # frame + slice threads: decoding is the cost
            convert = FrameConverter(preprocess)
            yield from _assemble(wanted, _decode_wanted(container, stream, index, wanted, convert))
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode the video of {path} ({_reason(exc)})") from None


def _scan(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path) -> _Index:
    pts, keyframes = [], []
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            raise MediaError(
                f"{path}: the video packets carry no timestamps",
                hint="remux it first: ffmpeg -i IN -c copy OUT.mkv",
            )
        pts.append(stamp)
        if packet.is_keyframe:
            keyframes.append(stamp)
    if not pts:
        raise MediaError(f"{path}: the video stream holds no frames", hint=_NOT_MEDIA_HINT)
    return _Index(np.unique(np.asarray(pts, dtype=np.int64)), np.unique(np.asarray(keyframes or [min(pts)])))


def _assemble(wanted: list[list[int]], frames: Iterator[tuple[int, np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """Group decoded (pts, array) pairs, which come in pts order, into each span's frame list, in span order.

    Spans are sorted by start and overlap only a little, so only a few lists are incomplete at any time.
    """
    waiting: dict[int, list[int]] = {}  # pts -> spans that want it
    for span, stamps in enumerate(wanted):
        for stamp in set(stamps):
            waiting.setdefault(stamp, []).append(span)
    missing = [len(set(stamps)) for stamps in wanted]
    got: dict[int, dict[int, np.ndarray]] = {}  # span -> pts -> array, for spans not yet yielded
    order = sorted(waiting)
    position = next_span = 0
    last = None
    for stamp, array in itertools.chain(frames, [(None, None)]):
        if stamp is None:  # the decoder stopped: a tail it never reached takes the last frame
            if last is None:
                raise MediaError("no video frame could be decoded")
            stamp, array = order[-1], last
        last = array
        # Every wanted pts up to this frame is filled by it: exact normally, the nearest later frame when the
        # decoder dropped one (a corrupt packet).
        while position < len(order) and order[position] <= stamp:
            for span in waiting.pop(order[position]):
                got.setdefault(span, {})[order[position]] = array
                missing[span] -= 1
            position += 1
        while next_span < len(wanted) and missing[next_span] == 0:
            have = got.pop(next_span)
            yield [have[stamp] for stamp in wanted[next_span]]
            next_span += 1


def _decode_wanted(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    index: _Index,
    wanted: list[list[int]],
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, RGB array) for every wanted frame, in pts order, from one forward pass with seeks over gaps."""
    keep = sorted({stamp for stamps in wanted for stamp in stamps})
    keep_set = set(keep)
    keyframes = index.keyframes.tolist()
    i, position, frames = 0, None, None
    while i < len(keep):
        k = bisect.bisect_right(keyframes, keep[i]) - 1
        keyframe = keyframes[max(k, 0)]
        # Decoding on from `position` passes through `keyframe` anyway when it is behind us; when it is
        # ahead, a seek skips everything in between (a silent stretch with no utterance).
        if frames is None or position is None or keyframe > position:
            if frames is not None:
                frames.close()
            frames = decode_from(container, stream, keyframe, keep_set)
        for frame in frames:
            if frame.pts is None:
                continue
            position = frame.pts
            if position >= keep[i]:
                yield position, convert(frame)
                while i < len(keep) and keep[i] <= position:
                    i += 1
                break
        else:
            return  # the stream ended before the remaining wanted frames
