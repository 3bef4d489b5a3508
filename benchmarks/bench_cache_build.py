"""Feature-cache build on CPU: `meldctl cache build` in 1 process beside 2 processes under torchrun (sharded).

Run: `python benchmarks/bench_cache_build.py [--rounds 1] [--workers 0] [--threads 1]`.

It prepares the embedded 70-clip sample once, then for each row builds the cache of every split (text,
audio and video; MiniLM, R3D-18 weights `none`: the same compute as the Kinetics weights; the default
preprocessing: 16 frames resized to 128x171 and centre-cropped to 112x112, log-Mel of up to 8 s) on a fresh
copy of the prepared folder (no cache in it):
- 1 process: `meldctl cache build --data-dir D ... --device cpu --json`;
- 2 processes: `torchrun --nproc_per_node 2 --standalone -m meldctl cache build ...` (same options): the
  processes of the node split every split's pending rows, and the first one writes the files.
Every process gets `--threads` torch threads (OMP_NUM_THREADS) and `--workers` DataLoader workers: with 2
cores and 1 thread each, 2 processes can use both cores, 1 process only one. With `--rounds N` the rows
alternate N times (each on a fresh copy) and the median is reported. The caches the two rows wrote are
compared at the end: sharding must not change the values.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import ChildRun, child_env, load_line, machine, print_table, run_child

from meldctl.data.manifest import read_manifest
from meldctl.prepare import prepare
from meldctl.settings import DataSettings

BIN = Path(sys.executable).parent


def build_command(data_dir: Path, processes: int, workers: int) -> list[str]:
    options = [
        "cache", "build", "--data-dir", str(data_dir), "--modalities", "text,audio,video", "--text-model", "minilm",
        "--video-weights", "none", "--device", "cpu", "--workers", str(workers), "--json",
    ]  # fmt: skip
    if processes == 1:
        return [str(BIN / "meldctl"), *options]
    return [str(BIN / "torchrun"), "--nproc_per_node", str(processes), "--standalone", "-m", "meldctl", *options]


def summaries(stdout: str) -> list[dict]:
    """The JSON summaries in a command's output (one per process under torchrun)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := stdout.find("{", at)) >= 0:
        value, end = decoder.raw_decode(stdout, at)
        found.append(value)
        at = end
    return found


def build(prepared: Path, folder: Path, processes: int, workers: int, threads: int) -> tuple[ChildRun, dict]:
    """Copy the prepared sample to `folder` (without any cache) and build the cache there."""
    shutil.copytree(prepared, folder, ignore=shutil.ignore_patterns("cache"))
    run = run_child(build_command(folder, processes, workers), env=child_env(threads))
    if run.returncode != 0:
        raise SystemExit(f"cache build with {processes} process(es) failed ({run.returncode}):\n{run.stderr[-3000:]}")
    summary = summaries(run.stdout)[0]
    print(f"  done: {processes} process(es) in {run.seconds:.1f} s; {load_line('now')}", flush=True)
    return run, summary


def compare_caches(a: Path, b: Path) -> list[list[str]]:
    """Per cache file of folder `a`: the same file of `b`, and the largest absolute difference."""
    rows = []
    for path in sorted((a / "cache").rglob("*.npy")):
        other = b / path.relative_to(a)
        if not other.is_file():
            rows.append([str(path.relative_to(a / "cache")), "missing in the 2-process build", ""])
            continue
        x, y = np.load(path).astype(np.float64), np.load(other).astype(np.float64)
        rows.append([str(path.relative_to(a / "cache")), str(list(x.shape)), f"{np.abs(x - y).max():.2e}"])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times each row runs (alternating); the median")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of each process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process (OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    print(machine(args.threads), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared"
        prepare(DataSettings(source="sample", data_dir=prepared))
        rows = {split: read_manifest(prepared, split) for split in ("train", "dev", "test")}
        clips = sum(r.status == "ok" for split_rows in rows.values() for r in split_rows)
        utterances = sum(len(split_rows) for split_rows in rows.values())
        results: dict[int, list[tuple[ChildRun, dict]]] = {1: [], 2: []}
        for n in range(args.rounds):
            for processes in (1, 2) if n % 2 == 0 else (2, 1):
                folder = Path(tmp) / f"p{processes}-r{n}"
                results[processes].append(build(prepared, folder, processes, args.workers, args.threads))
        differences = compare_caches(Path(tmp) / "p1-r0", Path(tmp) / "p2-r0")
        cached = sorted(results[1][0][1]["splits"]["train"])

    print(
        f"\ninputs: the embedded sample, {utterances} utterances ({clips} with a usable clip) in train, dev and "
        f"test; cached: {', '.join(cached)}; text minilm, R3D-18 weights none, 16 frames (resize 128x171, "
        f"centre crop 112x112), log-Mel of up to 8 s; each process {args.threads} torch thread(s), "
        f"{args.workers} DataLoader workers; median of {args.rounds} round(s)"
    )
    print(f"{load_line('after the runs')}\n")
    wall = {p: statistics.median(run.seconds for run, _ in results[p]) for p in (1, 2)}
    inner = {p: statistics.median(summary["seconds"] for _, summary in results[p]) for p in (1, 2)}
    table = []
    for processes, label in ((1, "`meldctl cache build`, 1 process"), (2, "`torchrun --nproc_per_node 2`, sharded")):
        rss = max(run.max_rss_mb for run, _ in results[processes])
        table.append(
            [
                label,
                f"{wall[processes]:.1f}",
                f"{clips / wall[processes]:.2f}",
                f"{inner[processes]:.1f}",
                f"{clips / inner[processes]:.2f}",
                f"{wall[1] / wall[processes]:.2f}x",
                f"{inner[1] / inner[processes]:.2f}x",
                f"{rss:.0f}",
            ]
        )
    header = ["what", "wall s", "clips/s", "build s", "clips/s (build)", "speed-up (wall)", "speed-up (build)"]
    print_table([*header, "peak RSS MiB"], table)
    print(
        "\nwall: process start to exit (imports, model and tokenizer loading, every split); build: the "
        "command's own `seconds` (rank 0), from its settings to the last cache file.\npeak RSS: the largest "
        "single process (wait4 on the launcher: torchrun and the ranks it waited for)."
    )
    print("\nsame values from both builds (largest absolute difference per cache file):\n")
    print_table(["cache file", "shape", "max |1 process - 2 processes|"], differences)


if __name__ == "__main__":
    main()
