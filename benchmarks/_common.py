"""What every benchmark prints: the machine it ran on, and Markdown tables."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
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
    """A finished child process: exit status, wall seconds, peak RSS, output."""

    returncode: int
    seconds: float
    max_rss_mb: float
    stdout: str
    stderr: str


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a process and read its own peak RSS from wait4 (its children that it waited for included).

    wait4 reports this one child, unlike RUSAGE_CHILDREN, which is the maximum over every child this
    process ever had (DataLoader workers forked from a large parent would show up there).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # communicate() would reap the child itself; read the pipes in threads and reap it here with wait4.
    out: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda name=name, pipe=pipe: out.__setitem__(name, pipe.read()))
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    return ChildRun(proc.returncode, seconds, usage.ru_maxrss / 1024, out["stdout"], out["stderr"])


def child_env(threads: int) -> dict[str, str]:
    """The environment for a child process limited to `threads` intra-op threads, like this process."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
