"""Progress of `meldctl analyze`: Rich bars on a terminal, a plain line every few seconds in a log."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from meldctl.analysis.segments import format_time

STAGES = {"segment": "finding utterances in the audio", "classify": "classifying utterances"}


def rate_line(stage: str, done: float, total: float, elapsed: float) -> str:
    """One plain progress line: what, how far, how fast, how long to go."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = format_time((total - done) / rate) if rate > 0 else "?"
    if stage == "segment":
        return f"{STAGES[stage]}: {format_time(done)}/{format_time(total)} of audio, {rate:.1f}x real time, ETA {eta}"
    return f"{STAGES.get(stage, stage)}: {done:.0f}/{total:.0f}, {rate:.1f} utterances/s, ETA {eta}"


class AnalyzeProgress:
    """Callable as `progress(stage, done, total)`; a context manager around the whole analysis.

    On a terminal, one Rich bar per stage (utterances/s and ETA). Elsewhere (a log, CI, a pipe), Rich would
    print nothing until the end, so a plain line goes out every `interval` seconds instead.
    """

    def __init__(self, console: Console, *, interval: float = 5.0) -> None:
        self.console, self.interval = console, interval
        self.live = console.is_terminal
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._printed = float("-inf")  # the first real progress prints at once
        self._finished: set[str] = set()

    def __enter__(self) -> AnalyzeProgress:
        if self.live:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.bars.stop()

    def __call__(self, stage: str, done: float, total: float) -> None:
        now = time.perf_counter()
        started = self._started.setdefault(stage, now)
        if not self.live:
            if done <= 0:  # a log line saying nothing has happened yet is noise
                return
            last = done >= total and stage not in self._finished
            if last or (now - self._printed >= self.interval and done < total):
                self._printed = now
                if last:
                    self._finished.add(stage)
                self.console.print(rate_line(stage, done, total, now - started), markup=False, highlight=False)
            return
        if stage not in self._tasks:
            self._tasks[stage] = self.bars.add_task(STAGES.get(stage, stage), total=total, rate="")
        elapsed = now - started
        rate = f"{done / elapsed:.1f} utt/s" if stage == "classify" and elapsed > 0 else ""
        if stage == "segment" and elapsed > 0:
            rate = f"{done / elapsed:.1f}x real time"
        self.bars.update(self._tasks[stage], completed=done, total=total, rate=rate)
