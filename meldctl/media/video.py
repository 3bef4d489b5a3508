"""Read a clip into the normalised frame tensor the video encoder takes, decoding as little as possible.

How: demux the video packets once (no decoding: cheap) to learn every frame's timestamp and where the
keyframes are, whatever the container reports (or fails to report) about frame count and duration. Pick the
frames shown at `num_frames` uniformly spaced instants of the whole clip, then decode forward to them,
seeking to a keyframe only when one lies between the decoder's position and the next wanted frame. A 3 s
clip is decoded once, start to end; a 5 minute mis-cut clip decodes only the GOPs that hold wanted frames.
Frames that are neither wanted nor referenced (most B-frames) are not decoded at all, and only the kept
frames are converted to RGB and resized. `benchmarks/bench_preprocess.py` measures it.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from meldctl.errors import MediaError, NoStreamError
from meldctl.media.features import normalize_frames, uniform_frame_indices, uniform_timestamps
from meldctl.model.config import PreprocessConfig

_BAD_CLIP_HINT = "re-extract or re-download the clip; `ffprobe FILE` shows what FFmpeg sees in it"


@dataclass(frozen=True)
class _PacketIndex:
    """What demuxing (without decoding) tells about a video stream."""

    pts: list[int]  # presentation timestamps, sorted; empty when the container gives none
    keyframes: list[int]  # pts of keyframes, sorted
    end: int  # pts just after the last frame
    count: int  # packets seen, the frame count when there are no timestamps


def read_video(path: str | Path, preprocess: PreprocessConfig, *, threads: int = 0) -> torch.Tensor:
    """Decode `preprocess.num_frames` frames spread uniformly across the whole clip.

    Works for any container and codec FFmpeg reads, any resolution, variable frame rates, and streams
    that report no frame count or duration. Frames are RGB in R3D-18's Kinetics geometry (`FrameConverter`:
    resize to `resize_size`, centre crop `crop_size`) and normalised with `preprocess.mean` / `preprocess.std`.
    A clip with fewer frames than `num_frames` repeats frames.

    Args:
        path: The clip.
        preprocess: Frame count, size and normalisation.
        threads: Decoder threads; 0 lets FFmpeg choose (all cores). DataLoader workers should pass 1
            so that workers, not threads, use the cores.

    Returns:
        float32 `[3, T, H, W]` with `T = num_frames`, `H = W = crop_size`.

    Raises:
        MediaError: the file is missing, empty, not media, has no video stream, or cannot be decoded.
    """
    path = Path(path)
    _check_file(path)
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            stream.codec_context.thread_type = "AUTO"  # frame + slice threads: the decode is the cost
            stream.codec_context.thread_count = threads
            frames = _sampled_frames(container, stream, preprocess)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read video {path}: {exc}", hint=_BAD_CLIP_HINT) from None
    if not frames:
        raise MediaError(f"no video frame of {path} could be decoded", hint=_BAD_CLIP_HINT)
    return clip_tensor(frames, preprocess)  # [3, T, H, W]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"video clip {path} does not exist", hint="check the path (or re-run `meldctl prepare`)")
    if not path.is_file():
        raise MediaError(f"video clip {path} is not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"video clip {path} is empty (0 bytes)", hint=_BAD_CLIP_HINT)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    # Cover art (an mp3's or m4a's picture) is a one-frame "video" stream, not a clip.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise NoStreamError(f"{path} has no video stream", hint="pass a video clip (mp4, mkv, webm, avi, mov)")
    return streams[0]


class FrameConverter:
    """One decoded frame -> the uint8 RGB array `[crop, crop, 3]` that `clip_tensor` stacks.

    The geometry is exactly the R3D-18 Kinetics preset's (`R3D_18_Weights.KINETICS400_V1.transforms()`):
    the whole frame resized to `resize_size` (height, width) with bilinear interpolation and no antialiasing
    (the filter the weights were trained with), then the centre `crop_size` square. Only the pixels of the
    crop are computed: bilinear without antialiasing reads two source rows and two source columns per output
    pixel, so the resize gathers those (`_BilinearCrop`) instead of resizing the whole frame and throwing most
    of it away. Only kept frames are converted; a display-matrix rotation (phone video) is applied first, as
    FFmpeg's players do. Build one per clip or video: it keeps one swscale context and its sampling plans.
    """

    def __init__(self, preprocess: PreprocessConfig) -> None:
        self.resize = tuple(preprocess.resize_size)
        self.crop = preprocess.crop_size
        self._reformatter = VideoReformatter()
        self._plans: dict[tuple[int, int], _BilinearCrop] = {}

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()  # [H, W, 3]
        turns = round((frame.rotation or 0) / 90) % 4
        if turns:
            rgb = np.rot90(rgb, turns)  # counter-clockwise, as the display matrix asks
        size = (rgb.shape[0], rgb.shape[1])
        plan = self._plans.get(size)
        if plan is None:
            plan = self._plans[size] = _BilinearCrop(size, self.resize, self.crop)
        return plan(rgb)


def _bilinear_taps(source: int, target: int, start: int, count: int) -> tuple[np.ndarray, ...]:
    """Source indices and weights of output pixels `start .. start + count` of a `source` -> `target` resize.

    PyTorch's bilinear rule without align_corners or antialiasing, in float32 as its kernel computes it: output
    pixel `i` samples the source at `(i + 0.5) * source / target - 0.5` (clamped at 0), between the two
    neighbouring pixels.
    """
    scale = np.float32(source) / np.float32(target)
    at = np.maximum(scale * (np.arange(start, start + count, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    first = np.minimum(np.floor(at).astype(np.int64), source - 1)
    far = np.clip(at - first.astype(np.float32), 0, 1).astype(np.float32)  # weight of the second pixel
    return first, np.minimum(first + 1, source - 1), np.float32(1) - far, far


class _BilinearCrop:
    """`F.center_crop(F.resize(image, resize, BILINEAR, antialias=False), crop)` for one input size, on uint8 HWC.

    Equal to torchvision's result except where float rounding lands a value on the other side of .5: at most
    one uint8 level, on about 1 value in 20,000 (`tests/media/test_video.py` checks both against torchvision).
    """

    def __init__(self, size: tuple[int, int], resize: tuple[int, int], crop: int) -> None:
        top = int(round((resize[0] - crop) / 2.0))  # torchvision's centre-crop offsets
        left = int(round((resize[1] - crop) / 2.0))
        self.rows0, self.rows1, up, down = _bilinear_taps(size[0], resize[0], top, crop)
        self.cols0, self.cols1, west, east = _bilinear_taps(size[1], resize[1], left, crop)
        self.up, self.down = up[:, None, None], down[:, None, None]
        self.west, self.east = west[None, :, None], east[None, :, None]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        upper, lower = rgb[self.rows0], rgb[self.rows1]  # [crop, W, 3] each
        top = self.west * upper[:, self.cols0] + self.east * upper[:, self.cols1]
        bottom = self.west * lower[:, self.cols0] + self.east * lower[:, self.cols1]
        return np.rint(self.up * top + self.down * bottom).astype(np.uint8)  # [crop, crop, 3]


def clip_tensor(frames: list[np.ndarray], preprocess: PreprocessConfig) -> torch.Tensor:
    """Frames from `FrameConverter` -> the normalised clip the video encoder takes, float32 `[3, T, H, W]`."""
    stacked = torch.from_numpy(np.stack(frames))  # [T, H, W, 3] uint8
    return normalize_frames(stacked, preprocess.mean, preprocess.std)  # [3, T, H, W]


def _sampled_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, preprocess: PreprocessConfig
) -> list[np.ndarray]:
    """The kept frames as uint8 `[H, W, 3]` RGB arrays, one per sample (repeats share one array)."""
    convert = FrameConverter(preprocess)
    index = _scan_packets(container, stream)
    if index.count == 0:
        return []
    if not index.pts:
        return _frames_by_index(container, stream, index.count, preprocess.num_frames, convert)
    targets = uniform_timestamps(index.pts[0], index.end - index.pts[0], preprocess.num_frames)
    # The frame on screen at time t is the last one whose pts is <= t.
    wanted = [index.pts[max(bisect.bisect_right(index.pts, t) - 1, 0)] for t in targets]
    found = _decode_at(container, stream, sorted(set(wanted)), index.keyframes, convert)
    if not found:
        return []
    # A wanted frame the decoder never produced (a corrupt tail) takes the nearest earlier one found.
    kept = sorted(found)
    return [found[kept[max(bisect.bisect_right(kept, w) - 1, 0)]] for w in wanted]


def _scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _PacketIndex:
    """Timestamps and keyframes from the packets alone: no frame is decoded."""
    pts: list[int] = []
    keyframes: list[int] = []
    durations: dict[int, int] = {}
    count = 0
    has_pts = True
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        count += 1
        if packet.pts is None:
            has_pts = False
            continue
        pts.append(packet.pts)
        durations[packet.pts] = packet.duration or 0
        if packet.is_keyframe:
            keyframes.append(packet.pts)
    if not has_pts or not pts:
        return _PacketIndex(pts=[], keyframes=[], end=0, count=count)
    pts.sort()  # demux order is decode order; B-frames make it differ from presentation order
    keyframes.sort()
    last = durations[pts[-1]]
    if last <= 0:  # no packet duration: assume the typical gap between frames
        last = int(statistics.median(b - a for a, b in zip(pts, pts[1:], strict=False))) if len(pts) > 1 else 1
    return _PacketIndex(pts=pts, keyframes=keyframes, end=pts[-1] + max(last, 1), count=count)


def _decode_at(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: list[int],
    keyframes: list[int],
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> dict[int, np.ndarray]:
    """Decode forward to each wanted pts, seeking only when that skips at least one keyframe's worth."""
    found: dict[int, np.ndarray] = {}
    keep = set(wanted)
    frames: Iterator[av.VideoFrame] | None = None
    position: int | None = None  # pts of the last decoded frame
    i = 0
    next_target = True
    while i < len(wanted):
        if next_target:
            next_target = False
            k = bisect.bisect_right(keyframes, wanted[i]) - 1
            keyframe = keyframes[k] if k >= 0 else wanted[0]
            # Decoding on from `position` would pass through `keyframe` anyway when it is behind us;
            # otherwise a seek skips everything in between.
            if frames is None or position is None or keyframe > position:
                frames = decode_from(container, stream, keyframe, keep)
        frame = next(frames, None)
        if frame is None:
            break
        if frame.pts is None:
            continue
        position = frame.pts
        if position >= wanted[i]:
            array = convert(frame)
            # Past the target (an imprecise seek, a dropped frame): the nearest later frame stands in.
            while i < len(wanted) and wanted[i] <= position:
                found[wanted[i]] = array
                i += 1
            next_target = True
    return found


def decode_from(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int, keep: set[int]
) -> Iterator[av.VideoFrame]:
    """Frames from the keyframe at or before `pts` on, skipping frames that are neither kept nor referenced.

    A frame no other frame references (most B-frames) can be dropped before decoding without changing any
    other frame, so only the kept ones are decoded: about 40% less work on typical x264 output. The
    setting is per packet; FFmpeg's frame threads take it with each packet.
    """
    try:
        container.seek(pts, stream=stream, backward=True)  # also flushes the decoder
    except av.FFmpegError:
        # No keyframe at or before `pts` (a clip cut mid-GOP): start from any frame; the decoder copes.
        container.seek(pts, stream=stream, backward=True, any_frame=True)
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in keep else "NONREF"
        yield from codec.decode(packet)  # the final empty packet drains the decoder


def _frames_by_index(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    count: int,
    num_frames: int,
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> list[np.ndarray]:
    """Fallback for streams without timestamps (some raw and AVI streams): sample by decode order."""
    targets = uniform_frame_indices(count, num_frames)
    container.seek(0)
    wanted = set(targets)
    found: dict[int, np.ndarray] = {}
    for n, frame in enumerate(container.decode(stream)):
        if n in wanted:
            found[n] = convert(frame)
        if n >= targets[-1]:
            break
    if not found:
        return []
    kept = sorted(found)
    return [found[kept[max(bisect.bisect_right(kept, t) - 1, 0)]] for t in targets]
