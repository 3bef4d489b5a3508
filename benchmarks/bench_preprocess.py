"""Preprocessing speed: our `read_video` against a bare PyAV decode and a naive OpenCV loop, plus log-Mel.

Run: `python benchmarks/bench_preprocess.py [CLIP ...] [--repeats N] [--threads 1]`. Without clips it writes a MELD-like
one (1280x720, 24 fps, H.264, 3.5 s; textured background with motion so the decoder does real work).

Rows, all on the same clip(s) in the same run, median of N rounds (each round runs every row once):
- bare PyAV decode: every frame decoded, nothing converted; the floor for any exact reader. Shown single
  threaded and with the same FFmpeg threading that `read_video` uses, so each ratio compares like with like.
- read_video: our path (uniform sampling over the whole clip; only the kept frames are converted to RGB,
  resized to 128x171 and centre-cropped to 112x112, R3D-18's Kinetics preset; normalised tensor).
- naive OpenCV: cv2.VideoCapture reads every frame, BGR->RGB, resizes each to 171x128 (bilinear) and
  centre-crops it to 112x112, then picks frames: the same geometry done per frame; also shown with 1 and
  with auto FFmpeg decoder threads.
"1 thread" and "threads (auto)" are FFmpeg's decoder threads. torch's intra-op threads (`--threads`, default 1,
as in DataLoader workers, where training and the cache run `read_video`) matter too: `read_video` resizes each
kept frame with torch, and on a shared machine several torch threads per small op cost more than they save.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meldctl.media.audio import log_mel_features, read_wav  # noqa: E402
from meldctl.media.features import mel_transform, normalize_frames, uniform_frame_indices  # noqa: E402
from meldctl.media.video import read_video  # noqa: E402
from meldctl.model.config import PreprocessConfig  # noqa: E402


def write_meld_like_clip(path: Path, *, seconds: float = 3.5, fps: int = 24, width: int = 1280, height: int = 720):
    """A clip shaped like MELD's: 720p H.264 yuv420p at 24 fps, with texture and motion."""
    rng = np.random.default_rng(0)
    # Smooth texture (bicubic-upscaled noise) larger than the frame, panned across; plus a moving block.
    coarse = torch.from_numpy(rng.random((1, 3, height // 16 + 8, width // 16 + 8), dtype=np.float32))
    texture = torch.nn.functional.interpolate(coarse, scale_factor=16, mode="bicubic").clamp(0, 1)  # [1, 3, H', W']
    texture = (texture[0].permute(1, 2, 0) * 230).to(torch.uint8).numpy()  # [H', W', 3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(int(seconds * fps)):
            dx, dy = (i * 3) % 96, (i * 2) % 96
            pixels = np.ascontiguousarray(texture[dy : dy + height, dx : dx + width])  # [H, W, 3]
            x = (i * 17) % (width - 200)
            pixels[200:400, x : x + 200] = (230, 200, 170)
            grain = rng.integers(0, 8, (height, width, 1), dtype=np.uint8)  # sensor noise, as in TV footage
            frame = av.VideoFrame.from_ndarray(pixels + grain, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def bare_decode(path: Path, threaded: bool) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # The same decoder settings as read_video's. Set both ways: PyAV's default (slice threads, count 0)
        # is not single-threaded.
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = 0 if threaded else 1
        return sum(1 for _ in container.decode(stream))


def naive_opencv(path: Path, preprocess: PreprocessConfig, threads: int = 0) -> torch.Tensor:
    import cv2

    height, width = preprocess.resize_size
    crop = preprocess.crop_size
    top, left = round((height - crop) / 2), round((width - crop) / 2)  # as torchvision's center_crop
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)  # [128, 171, 3]
        frames.append(resized[top : top + crop, left : left + crop])  # [112, 112, 3]
    capture.release()
    picked = np.stack([frames[i] for i in uniform_frame_indices(len(frames), preprocess.num_frames)])
    return normalize_frames(torch.from_numpy(picked), preprocess.mean, preprocess.std)  # [3, T, H, W]


def interleaved_medians(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each case; every round runs each case once, so a change of load hits all alike."""
    for fn in cases.values():
        fn()  # warm-up: file cache, lazy imports, FFmpeg init
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: file cache, lazy imports, FFmpeg init
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def describe(path: Path) -> str:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for p in container.demux(stream) if p.size)
        codec = stream.codec_context
        mbps = path.stat().st_size * 8 / (container.duration / av.time_base) / 1e6
        return (
            f"{path.name}: {codec.width}x{codec.height} {codec.name} {float(stream.average_rate):.2f} fps, "
            f"{frames} frames, {mbps:.1f} Mbit/s"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help="clips to time (default: a generated MELD-like clip)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    preprocess = PreprocessConfig()
    height, width = preprocess.resize_size
    crop = preprocess.crop_size
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        clips = args.clips or [write_meld_like_clip(Path(tmp) / "meld_like_720p.mp4")]
        wav = Path(tmp) / "utterance.wav"
        soundfile.write(str(wav), np.random.default_rng(0).normal(0, 0.1, 16000 * 4).astype(np.float32), 16000)

        rows: list[tuple[str, float]] = []
        cases = {
            "bare PyAV decode, 1 thread": lambda: [bare_decode(c, threaded=False) for c in clips],
            "bare PyAV decode, FFmpeg threads (auto)": lambda: [bare_decode(c, threaded=True) for c in clips],
            "read_video, 1 thread": lambda: [read_video(c, preprocess, threads=1) for c in clips],
            "read_video, FFmpeg threads (auto)": lambda: [read_video(c, preprocess) for c in clips],
            "naive OpenCV loop, 1 thread": lambda: [naive_opencv(c, preprocess, threads=1) for c in clips],
            "naive OpenCV loop, FFmpeg threads (auto)": lambda: [naive_opencv(c, preprocess) for c in clips],
        }
        rows.extend(interleaved_medians(cases, args.repeats).items())

        mel_transform.cache_clear()
        start = time.perf_counter()
        mel_shape = list(log_mel_features(read_wav(wav, preprocess.sample_rate), preprocess).shape)
        first_mel = time.perf_counter() - start
        audio = median_seconds(lambda: log_mel_features(read_wav(wav, preprocess.sample_rate), preprocess), 20)
        clip_lines = [describe(c) for c in clips]

    t = dict(rows)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs visible, "
        f"python {platform.python_version()}, torch {torch.__version__}, av {av.__version__} "
        f"(FFmpeg {av.ffmpeg_version_info}), torch threads {torch.get_num_threads()}"
    )
    print(
        "load average before the runs: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (1/5/15 min; above 0: other processes share the cores)"
    )
    print("inputs: " + "; ".join(clip_lines))
    print(
        f"preprocess: {preprocess.num_frames} frames -> resize {height}x{width}, centre crop {crop}x{crop} "
        f"(R3D-18 Kinetics preset), median of {args.repeats} interleaved rounds after one warm-up\n"
    )
    print(f"| {'case':<40} | {'median ms':>9} |")
    print(f"| {'-' * 40} | {'-' * 9}:|")
    for name, seconds in rows:
        print(f"| {name:<40} | {seconds * 1000:9.1f} |")
    print()
    ratios = [
        (
            "read_video / bare decode (both 1 thread)",
            t["read_video, 1 thread"] / t["bare PyAV decode, 1 thread"],
            "<= 1.2",
        ),
        (
            "read_video / bare decode (both threaded)",
            t["read_video, FFmpeg threads (auto)"] / t["bare PyAV decode, FFmpeg threads (auto)"],
            "<= 1.2",
        ),
        (
            "naive OpenCV / read_video (both 1 thread)",
            t["naive OpenCV loop, 1 thread"] / t["read_video, 1 thread"],
            ">= 1.7",
        ),
        (
            "naive OpenCV / read_video (both threaded)",
            t["naive OpenCV loop, FFmpeg threads (auto)"] / t["read_video, FFmpeg threads (auto)"],
            ">= 1.7",
        ),
    ]
    print(f"| {'ratio':<42} | {'value':>6} | target |")
    print(f"| {'-' * 42} | {'-' * 6}:| ------ |")
    for name, value, target in ratios:
        print(f"| {name:<42} | {value:6.2f} | {target} |")
    print(
        f"\naudio: 4 s 16 kHz WAV -> read_wav + log_mel_features {mel_shape} (the utterance's own length): "
        f"median {audio * 1000:.2f} ms (first call, building the Mel filterbank: {first_mel * 1000:.2f} ms)"
    )


if __name__ == "__main__":
    main()
