"""Predict latency and memory: `Predictor.predict` per clip beside the bare forward; `meldctl predict` on long clips.

Run: `python benchmarks/bench_predict.py [--limit N] [--threads 1] [--cold-runs 1] [--long-hours 4] [--ckpt best.pt]`.
It prepares the embedded sample into a temporary folder and trains a checkpoint on it there (1 epoch,
text+audio+video, MiniLM, R3D-18 with random weights: the same compute as Kinetics-400 weights), then:
- predict: `Predictor.predict(clip, text)` with the model loaded: decode 16 frames, read the audio track,
  log-Mel, tokenise, forward, softmax; one call per clip of the sample, the median reported;
- forward: `Predictor.run([prepared])` on the same clip's inputs, prepared beforehand by `Predictor.prepare`
  (the floor: the model alone); interleaved with predict clip by clip, so load changes hit both alike;
- cold start: one `meldctl predict CLIP --text ... --ckpt best.pt --device cpu` process, wall time from
  spawn to exit (imports, checkpoint load, one prediction, table), and its peak RSS from wait4;
- long clips: the same command on a clip of `--long-hours` hours and on a 3-second clip made the same way
  (FFmpeg's lavfi test pattern at 64x36, 24 fps, H.264, keyframe every 10 s, and a 440 Hz tone as 16 kHz mono
  AAC; the long one is a 60 s piece repeated with `-stream_loop` and stream copy, so writing it takes
  seconds), with `--json`, checked to have used every modality. Predict reads only the audio window the
  model uses and 16 frames, so its peak RSS must not grow with the clip's length.
All in one process limited to `--threads` torch threads (the child gets the same via OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch
from _common import ChildRun, child_env, load_line, machine, print_table, run_child

from meldctl.data.manifest import read_manifest
from meldctl.inference import Predictor
from meldctl.media.ffmpeg import ffmpeg_exe
from meldctl.prepare import prepare
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training.trainer import run_training


def train_checkpoint(folder: Path, threads: int, *, context_past: int = 0, context_future: int = 0) -> Path:
    """Prepare the sample into `folder` and train 1 epoch there (in `run/`, or `run-context/` with a dialogue
    context window); the path of best.pt."""
    data = DataSettings(source="sample", data_dir=folder / "sample")
    prepare(data)
    model = ModelSettings(modalities=["text", "audio", "video"], text_model="minilm", video_weights="none",
                          context_past=context_past, context_future=context_future)  # fmt: skip
    train = TrainSettings(epochs=1, device="cpu", workers=min(2, threads + 1))
    run = "run-context" if context_past + context_future else "run"
    result = run_training(data, model, train, run_dir=folder / run)
    assert result.best_path is not None, "training wrote no best.pt"
    return result.best_path


def write_clip(path: Path, seconds: float) -> Path:
    """A clip of `seconds` (tiny test-pattern video and a tone); long ones repeat a 60 s piece by stream copy."""
    piece = min(seconds, 60.0)
    ffmpeg = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y"]
    first = path.with_name(f"{path.stem}.piece.mp4") if seconds > piece else path
    subprocess.run(
        [
            *ffmpeg,
            "-f", "lavfi", "-i", f"testsrc=size=64x36:rate=24:duration={piece}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={piece}",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "240", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "16k", "-ac", "1", "-shortest", str(first),
        ],
        check=True,
    )  # fmt: skip
    if first != path:
        loops = round(seconds / piece) - 1
        subprocess.run([*ffmpeg, "-stream_loop", str(loops), "-i", str(first), "-c", "copy", str(path)], check=True)
        first.unlink()
    return path


def describe(path: Path) -> str:
    with av.open(str(path)) as container:
        hours = container.duration / av.time_base / 3600
    length = f"{hours:.2f} h" if hours >= 0.1 else f"{hours * 3600:.1f} s"
    size = path.stat().st_size
    return f"{length}, {size / 2**20:.1f} MiB" if size >= 2**20 else f"{length}, {size / 2**10:.0f} KiB"


def predict_process(exe: str, clip: Path, text: str, ckpt: Path, threads: int, *, check: bool = False) -> ChildRun:
    """One `meldctl predict` process; its wall time and peak RSS. `check`: it must have used every modality."""
    command = [exe, "predict", str(clip), "--text", text, "--ckpt", str(ckpt), "--device", "cpu"]
    run = run_child([*command, "--json"] if check else command, env=child_env(threads))
    if run.returncode != 0:
        raise SystemExit(f"meldctl predict {clip} failed ({run.returncode}):\n{run.stderr[-2000:]}")
    if check and json.loads(run.stdout).get("missing"):
        raise SystemExit(f"meldctl predict {clip} answered without {json.loads(run.stdout)['missing']}")
    return run


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N clips of the sample (default all 70)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold `meldctl predict` processes (median)")
    parser.add_argument("--long-hours", type=float, default=4.0, help="length of the long clip")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint trained on the sample (default: train one here)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine(args.threads), flush=True)
    exe = shutil.which("meldctl") or str(Path(sys.executable).parent / "meldctl")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        data_dir = Path(tmp) / "sample"
        if args.ckpt is None:
            ckpt = train_checkpoint(Path(tmp), args.threads)
            print(f"  trained {ckpt.name} in {time.perf_counter() - start:.0f} s; {load_line('now')}", flush=True)
        else:
            ckpt = args.ckpt
            prepare(DataSettings(source="sample", data_dir=data_dir))
        rows = [r for split in ("train", "dev", "test") for r in read_manifest(data_dir, split) if r.status == "ok"]
        rows = rows[: args.limit] if args.limit else rows
        clips = [(data_dir / r.clip, r.text) for r in rows]

        start = time.perf_counter()
        predictor = Predictor.from_path(ckpt, "cpu")
        load_s = time.perf_counter() - start
        predictor.predict(*clips[0])  # warm-up: lazy imports, oneDNN kernels, the Mel filterbank
        predict_s, forward_s, inputs_s = [], [], []
        for clip, text in clips:
            predict_s.append(timed(lambda clip=clip, text=text: predictor.predict(clip, text)))
            start = time.perf_counter()
            prepared = predictor.prepare(clip, text)
            inputs_s.append(time.perf_counter() - start)
            forward_s.append(timed(lambda prepared=prepared: predictor.run([prepared])))
        print(f"  done: {len(clips)} clips; {load_line('now')}", flush=True)

        clip, text = clips[0]
        cold = [predict_process(exe, clip, text, ckpt, args.threads) for _ in range(args.cold_runs)]
        start = time.perf_counter()
        made = [write_clip(Path(tmp) / "short.mp4", 3.0), write_clip(Path(tmp) / "long.mp4", args.long_hours * 3600)]
        write_s = time.perf_counter() - start
        lengths = []
        for path in made:
            run = predict_process(exe, path, text, ckpt, args.threads, check=True)
            lengths.append((path, describe(path), run))
        sample_info = describe(clip)
        print(f"  done: cold and long-clip predicts; {load_line('now')}", flush=True)
        ckpt_mb = ckpt.stat().st_size / 2**20

    predict_med, forward_med = statistics.median(predict_s), statistics.median(forward_s)
    inputs_med = statistics.median(inputs_s)
    cold_s = statistics.median(r.seconds for r in cold)
    rss_mb = max(r.max_rss_mb for r in cold)
    origin = "trained here" if args.ckpt is None else str(args.ckpt)
    print(
        f"\ninputs: {len(clips)} clips of the embedded sample with their utterance text; checkpoint {origin}, "
        f"1 epoch on the sample (text+audio+video, minilm, R3D-18 weights none), {ckpt_mb:.0f} MiB; "
        f"16 frames (resize 128x171, centre crop 112x112), audio up to 8 s; in-process checkpoint load {load_s:.2f} s"
    )
    print(f"long clips written with {Path(ffmpeg_exe()).name} in {write_s:.1f} s; text of all: {text!r}")
    print(f"{load_line('after the runs')}\n")
    table = [
        [
            "forward: Predictor.run on prepared inputs (median)",
            f"{forward_med * 1000:.0f}",
            "1.00x",
            f"min {min(forward_s) * 1000:.0f}, max {max(forward_s) * 1000:.0f}",
        ],
        [
            "inputs: Predictor.prepare alone (median)",
            f"{inputs_med * 1000:.0f}",
            f"{inputs_med / forward_med:.2f}x",
            "decode, audio, log-Mel, tokenise",
        ],
        [
            "predict: Predictor.predict per clip (median)",
            f"{predict_med * 1000:.0f}",
            f"{predict_med / forward_med:.2f}x",
            f"min {min(predict_s) * 1000:.0f}, max {max(predict_s) * 1000:.0f}",
        ],
        [
            f"cold start: one `meldctl predict` process (median of {len(cold)})",
            f"{cold_s * 1000:.0f}",
            f"{cold_s / forward_med:.2f}x",
            f"{cold_s / predict_med:.1f}x a warm predict; peak RSS {rss_mb:.0f} MiB",
        ],
    ]
    print_table(["what", "ms", "vs forward", "note"], table)
    print()
    short_rss = lengths[0][2].max_rss_mb
    print_table(
        ["`meldctl predict` on", "clip", "seconds", "peak RSS MiB", "vs 3 s clip"],
        [[f"generated {path.stem} clip", info, f"{run.seconds:.1f}", f"{run.max_rss_mb:.0f}",
          f"{run.max_rss_mb / short_rss:.2f}x"] for path, info, run in lengths]
        + [[f"sample clip {clips[0][0].name} (cold start above)", sample_info, f"{cold_s:.1f}", f"{rss_mb:.0f}",
            f"{rss_mb / short_rss:.2f}x"]],
    )  # fmt: skip
    ratio = predict_med / forward_med
    long_rss = lengths[-1][2].max_rss_mb
    worst = max(rss_mb, short_rss, long_rss)
    print(f"\ntarget: predict per clip <= 1.3x forward: {ratio:.2f}x -> {'PASS' if ratio <= 1.3 else 'FAIL'}")
    print(
        f"target: peak RSS of `meldctl predict` < 2 GB (every clip): {worst:.0f} MiB -> "
        f"{'PASS' if worst < 2048 else 'FAIL'}"
    )
    print(f"memory flat in clip length: {args.long_hours:g} h clip / 3 s clip = {long_rss / short_rss:.2f}x peak RSS")


if __name__ == "__main__":
    main()
