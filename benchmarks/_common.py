"""What every benchmark prints: the machine it ran on, and Markdown tables."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        if names:
            return names[0]
    return platform.processor() or "?"


def machine(threads: int) -> str:
    """One line about the machine; call it before the runs, so the load average is that of the others."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.system()} {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores visible, "
        f"load average {load} (1/5/15 min; above 0: other processes share the cores)\n"
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, torch threads {threads}"
    )


def load_line(when: str) -> str:
    return f"load average {when}: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for n, row in enumerate([header, *rows]):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("| " + " | ".join(cells) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


@dataclass
class ChildRun:
    """A finished child process: exit status, wall seconds, peak RSS, output, CPU seconds (user + system)."""

    returncode: int
    seconds: float
    max_rss_mb: float
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0


# Runs the command and writes its wall seconds, peak RSS (KiB), exit code and CPU seconds. The command is
# started by this small launcher, not by the benchmark itself: Linux carries a process's RSS high-water mark
# across fork and exec, so a child forked straight from a benchmark holding a model would report the
# benchmark's peak.
_LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} "
              f"{usage.ru_utime + usage.ru_stime}")
"""


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a process; its wall time and its own peak RSS (wait4: it and the children it waited for)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage"
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(report), *args], env=env, capture_output=True, text=True
        )
        seconds, max_rss_kib, returncode, cpu = report.read_text().split()
    return ChildRun(int(returncode), float(seconds), int(max_rss_kib) / 1024, done.stdout, done.stderr, float(cpu))


def child_env(threads: int) -> dict[str, str]:
    """The environment for a child process limited to `threads` intra-op threads, like this process."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
