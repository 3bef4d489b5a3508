"""Predict latency: `Predictor.predict` per clip beside the bare model forward, and a cold `meldctl predict`.

Run: `python benchmarks/bench_predict.py [--limit N] [--threads 1] [--cold-runs 1] [--ckpt best.pt]`.
It prepares the embedded sample into a temporary folder and trains a checkpoint on it there (1 epoch,
text+audio+video, MiniLM, R3D-18 with random weights: the same compute as Kinetics-400 weights), then:
- predict: `Predictor.predict(clip, text)` with the model loaded: decode 16 frames, read the audio track,
  log-Mel, tokenise, forward, softmax; one call per clip of the sample, the median reported;
- forward: `Predictor.run([prepared])` on the same clip's inputs, prepared beforehand by `Predictor.prepare`
  (the floor: the model alone); interleaved with predict clip by clip, so load changes hit both alike;
- cold start: one `meldctl predict CLIP --text ... --ckpt best.pt --device cpu` process, wall time from
  spawn to exit (imports, checkpoint load, one prediction, table), and its peak RSS from wait4.
All in one process limited to `--threads` torch threads (the child gets the same via OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import child_env, load_line, machine, print_table, run_child

from meldctl.data.manifest import read_manifest
from meldctl.inference import Predictor
from meldctl.prepare import prepare
from meldctl.settings import DataSettings, ModelSettings, TrainSettings
from meldctl.training.trainer import run_training


def train_checkpoint(folder: Path, threads: int) -> Path:
    """Prepare the sample into `folder` and train 1 epoch there; the path of best.pt."""
    data = DataSettings(source="sample", data_dir=folder / "sample")
    prepare(data)
    model = ModelSettings(modalities=["text", "audio", "video"], text_model="minilm", video_weights="none")
    train = TrainSettings(epochs=1, device="cpu", workers=min(2, threads + 1))
    result = run_training(data, model, train, run_dir=folder / "run")
    assert result.best_path is not None, "training wrote no best.pt"
    return result.best_path


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N clips of the sample (default all 70)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold `meldctl predict` processes (median)")
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
        command = [exe, "predict", str(clip), "--text", text, "--ckpt", str(ckpt), "--device", "cpu"]
        cold = [run_child(command, env=child_env(args.threads)) for _ in range(args.cold_runs)]
        for run in cold:
            if run.returncode != 0:
                raise SystemExit(f"meldctl predict failed ({run.returncode}):\n{run.stderr[-2000:]}")
        ckpt_mb = ckpt.stat().st_size / 2**20

    predict_med, forward_med = statistics.median(predict_s), statistics.median(forward_s)
    inputs_med = statistics.median(inputs_s)
    cold_s = statistics.median(r.seconds for r in cold)
    rss_mb = max(r.max_rss_mb for r in cold)
    origin = "trained here" if args.ckpt is None else str(args.ckpt)
    print(
        f"\ninputs: {len(clips)} clips of the embedded sample with their utterance text; checkpoint {origin}, "
        f"1 epoch on the sample (text+audio+video, minilm, R3D-18 weights none), {ckpt_mb:.0f} MiB; "
        f"16 frames at 112x112, 8 s audio; in-process checkpoint load {load_s:.2f} s"
    )
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
    ratio = predict_med / forward_med
    print(f"\ntarget: predict per clip <= 1.3x forward: {ratio:.2f}x -> {'PASS' if ratio <= 1.3 else 'FAIL'}")
    print(f"target: peak RSS of `meldctl predict` < 2 GB: {rss_mb:.0f} MiB -> {'PASS' if rss_mb < 2048 else 'FAIL'}")


if __name__ == "__main__":
    main()
