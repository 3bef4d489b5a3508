"""Audio extraction throughput of `prepare`: meldctl's worker pool beside a plain loop of ffmpeg processes.

Runs on copies of the embedded sample's clips (no network, no dataset needed):

    python benchmarks/bench_prepare.py [--repeat 1] [--rounds 3]

Rows, all over the same clips in the same run:
- plain loop: one `ffmpeg -i clip -ac 1 -ar 16000 out.wav` after another (what a shell script would do);
- extract_audio, N workers: meldctl's atomic extraction in a thread pool of N FFmpeg processes;
- prepare(), N workers: the whole command (probe with PyAV, extract, manifest) on the sample.
The best of `--rounds` rounds is reported, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import print_table

from meldctl.media.ffmpeg import extract_audio, ffmpeg_exe
from meldctl.prepare import prepare, sample_dir
from meldctl.settings import DataSettings


def collect_clips(folder: Path, repeat: int) -> list[Path]:
    """Copy the sample's clips `repeat` times into `folder`."""
    clips = []
    for n in range(repeat):
        for clip in sorted(sample_dir().rglob("*.mp4")):
            target = folder / f"r{n}_{clip.parent.name}_{clip.name}"
            shutil.copyfile(clip, target)
            clips.append(target)
    return clips


def plain_loop(clips: list[Path], out: Path) -> None:
    for clip in clips:
        args = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(clip), "-vn", "-ac", "1"]
        subprocess.run([*args, "-ar", "16000", str(out / f"{clip.stem}.wav")], check=True)


def pool_extract(clips: list[Path], out: Path, workers: int) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda clip: extract_audio(clip, out / f"{clip.stem}.wav"), clips))


def whole_prepare(out: Path, workers: int) -> None:
    prepare(DataSettings(source="sample", data_dir=out, workers=workers))


def _cpu_seconds() -> float:
    # FFmpeg runs in child processes: their CPU time counts, with this process's own (PyAV probes, threads).
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_seconds(run: Callable[[Path], None], rounds: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `rounds` runs, each into a fresh output folder.

    CPU over wall is the number of cores a row kept busy: when it stays far below the worker count on an
    otherwise idle machine, the pool is the bottleneck; on a shared machine it is the other processes.
    """
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as out:
            started, cpu = time.perf_counter(), _cpu_seconds()
            run(Path(out))
            times.append((time.perf_counter() - started, _cpu_seconds() - cpu))
    return min(times)


def machine() -> str:
    cpu = platform.processor() or "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    version = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores visible, "
        f"load average before the run {os.getloadavg()[0]:.1f} (above 0: other processes share the cores)\n"
        f"Python {sys.version.split()[0]}, {version} ({ffmpeg_exe()})"
    )


def _cells(name: str, result: tuple[float, float], clips: int, plain: float | None, one: float) -> list[str]:
    seconds, cpu = result
    ratio = f"{plain / seconds:.2f}x" if plain else ""
    return [name, f"{seconds:.2f}", f"{clips / seconds:.1f}", f"{cpu / seconds:.2f}", ratio, f"{one / seconds:.2f}x"]


def main() -> None:
    parser = argparse.ArgumentParser(description="prepare audio extraction benchmark")
    parser.add_argument("--repeat", type=int, default=1, help="copies of the 70 sample clips")
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the best is reported")
    args = parser.parse_args()
    info = machine()  # before the runs, so the load average is that of the other processes
    cores = os.cpu_count() or 1
    workers = sorted({1, 2, cores})
    with tempfile.TemporaryDirectory() as folder:
        clips = collect_clips(Path(folder), args.repeat)
        rows = [("plain loop of ffmpeg processes", best_seconds(lambda out: plain_loop(clips, out), args.rounds))]
        for n in workers:
            seconds = best_seconds(lambda out, n=n: pool_extract(clips, out, n), args.rounds)
            rows.append((f"extract_audio, {n} worker{'s' * (n > 1)}", seconds))
    sample_clips = len(list(sample_dir().rglob("*.mp4")))
    prepare_rows = [
        (
            f"prepare() on the sample, {n} worker{'s' * (n > 1)}",
            best_seconds(lambda out, n=n: whole_prepare(out, n), args.rounds),
        )
        for n in workers
    ]
    print(info)
    print(f"{len(clips)} clips for extraction (sample x{args.repeat}, ~2 s each); prepare() rows: {sample_clips} clips")
    print(f"best of {args.rounds} rounds\n")
    plain, one, one_prepare = rows[0][1][0], rows[1][1][0], prepare_rows[0][1][0]
    table = [_cells(name, result, len(clips), plain, one) for name, result in rows]
    table += [_cells(name, result, sample_clips, None, one_prepare) for name, result in prepare_rows]
    print_table(["what", "seconds", "clips/s", "cores busy", "vs plain loop", "vs 1 worker"], table)


if __name__ == "__main__":
    main()
