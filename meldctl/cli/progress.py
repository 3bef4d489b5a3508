"""Progress for long work: feature caching (utterances/s, ETA), epochs and batches (loss, samples/s).

On a terminal it draws Rich bars. Anywhere else (a SageMaker job's CloudWatch log, `... 2> train.log`) bars
would print nothing until the end, so long phases print a plain line every `every_s` seconds instead: done/total,
rate and ETA, readable in a log.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from meldctl.cli.common import console as default_console
from meldctl.training.metrics import epoch_line

PLAIN_EVERY_S = 30.0


class RateMeter:
    """Rate and ETA of one long phase, and whether its next plain line is due."""

    def __init__(self, total: int, every_s: float, done: int = 0) -> None:
        self.total, self.every_s = total, every_s
        self._start, self._start_done = time.monotonic(), done
        self._last_line = float("-inf")

    def rate(self, done: int) -> float:
        """Items per second since the phase started."""
        return (done - self._start_done) / max(time.monotonic() - self._start, 1e-9)

    def due(self, done: int) -> bool:
        """True every `every_s` seconds, and at the end of the phase."""
        now = time.monotonic()
        if done >= self.total or now - self._last_line >= self.every_s:
            self._last_line = now
            return True
        return False

    def summary(self, done: int, unit: str) -> str:
        """`1200/13708 (8.8%), 35.2 utt/s, ETA 5m 55s`."""
        rate = self.rate(done)
        share = f" ({100 * done / self.total:.1f}%)" if self.total else ""
        eta = duration((self.total - done) / rate) if rate > 0 else "?"
        return f"{done}/{self.total}{share}, {rate:.1f} {unit}/s, ETA {eta}"


def duration(seconds: float) -> str:
    """`1h 02m`, `5m 55s` or `12s`."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class RichReporter:
    """Cache progress, an epoch bar and a batch bar with loss and samples/s, one metric line per epoch.

    The metric line goes to stderr in a fixed `key=value` form that SageMaker metric definitions can read.

    Args:
        console: Where to write (default: meldctl's stderr console).
        every_s: Without a terminal, the seconds between two plain lines of one phase.
    """

    def __init__(self, console: Console | None = None, *, every_s: float = PLAIN_EVERY_S) -> None:
        self.console = console or default_console
        self.plain = not self.console.is_terminal
        self.every_s = every_s
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._meters: dict[str, RateMeter] = {}
        self._epoch_task = self._batch_task = None
        self._epoch, self._epochs, self._batches_done = 0, 0, 0
        self._samples, self._loss = 0, 0.0

    def __enter__(self) -> RichReporter:
        if not self.plain:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.plain:
            self.bars.stop()

    def progress(self, label: str, done: int, total: int) -> None:
        if label not in self._meters:
            self._meters[label] = RateMeter(total, self.every_s, done)
            if not self.plain:
                self._tasks[label] = self.bars.add_task(label, total=total, info="")
        meter = self._meters[label]
        if self.plain:
            if meter.due(done):
                self._line(f"{label}: {meter.summary(done, 'utt')}")
            return
        self.bars.update(self._tasks[label], completed=done, info=f"{meter.rate(done):.1f} utt/s")

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self._epoch, self._epochs, self._batches_done = epoch, epochs, 0
        self._meters["batches"] = RateMeter(batches, self.every_s)
        self._samples = 0
        if self.plain:
            self._line(f"epoch {epoch}/{epochs}: {batches} batches")
            return
        if self._epoch_task is None:
            self._epoch_task = self.bars.add_task("epochs", total=epochs, completed=epoch - 1, info="")
        if self._batch_task is not None:
            self.bars.remove_task(self._batch_task)
        self._batch_task = self.bars.add_task(f"epoch {epoch}", total=batches, info="")

    def batch(self, samples: int, loss: float) -> None:
        self._samples += samples
        self._batches_done += 1
        self._loss = loss if self._samples == samples else 0.9 * self._loss + 0.1 * loss
        meter = self._meters["batches"]
        rate = meter.rate(self._samples)  # samples/s: the meter counts batches, the rate is of samples
        if self.plain:
            if meter.due(self._batches_done):
                summary = meter.summary(self._batches_done, "batches")
                self._line(f"epoch {self._epoch}/{self._epochs}: batch {summary}, loss {self._loss:.3f}, "
                           f"{rate:.0f} samples/s")  # fmt: skip
            return
        self.bars.update(self._batch_task, advance=1, info=f"loss {self._loss:.3f}  {rate:.0f} samples/s")

    def epoch_end(self, record: dict[str, Any]) -> None:
        if not self.plain:
            wf1 = record["dev_emotion_weighted_f1"]
            self.bars.update(self._epoch_task, advance=1, info=f"dev emotion wF1 {wf1:.3f}")
        self._line(f"{epoch_line(record)}{'  (best)' if record.get('improved') else ''}")

    def note(self, text: str) -> None:
        self._line(text)

    def _line(self, text: str) -> None:
        # soft_wrap: a job's log is no terminal, and a wrapped line would hide metrics from SageMaker's regexes.
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
