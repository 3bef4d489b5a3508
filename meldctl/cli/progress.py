"""Rich progress for long work: feature caching (utterances/s, ETA), epochs and batches (loss, samples/s)."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from meldctl.cli.common import console
from meldctl.training.metrics import epoch_line


class RichReporter:
    """Cache progress, an epoch bar and a batch bar with loss and samples/s, one metric line per epoch.

    The metric line goes to stderr in a fixed `key=value` form that SageMaker metric definitions can read.
    """

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._epoch_task = self._batch_task = None
        self._samples, self._started, self._loss = 0, 0.0, 0.0

    def __enter__(self) -> RichReporter:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def progress(self, label: str, done: int, total: int) -> None:
        task = self._tasks.get(label)
        if task is None:
            task = self._tasks[label] = self.bars.add_task(label, total=total, info="")
            self._cache_started = (time.perf_counter(), done)
        t0, d0 = self._cache_started
        rate = (done - d0) / max(time.perf_counter() - t0, 1e-9)
        self.bars.update(task, completed=done, info=f"{rate:.1f} utt/s")

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if self._epoch_task is None:
            self._epoch_task = self.bars.add_task("epochs", total=epochs, completed=epoch - 1, info="")
        if self._batch_task is not None:
            self.bars.remove_task(self._batch_task)
        self._batch_task = self.bars.add_task(f"epoch {epoch}", total=batches, info="")
        self._samples, self._started = 0, time.perf_counter()

    def batch(self, samples: int, loss: float) -> None:
        self._samples += samples
        self._loss = loss if self._samples == samples else 0.9 * self._loss + 0.1 * loss
        rate = self._samples / max(time.perf_counter() - self._started, 1e-9)
        self.bars.update(self._batch_task, advance=1, info=f"loss {self._loss:.3f}  {rate:.0f} samples/s")

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.bars.update(self._epoch_task, advance=1, info=f"dev emotion wF1 {record['dev_emotion_weighted_f1']:.3f}")
        # soft_wrap: a job's log is no terminal, and a wrapped line would hide metrics from SageMaker's regexes.
        self.bars.console.print(
            f"{epoch_line(record)}{'  (best)' if record.get('improved') else ''}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def note(self, text: str) -> None:
        self.bars.console.print(text)
