"""Local training for `meldctl train`: progress bars, the run folder, the SageMaker container contract."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from meldctl.cli.common import console, print_json
from meldctl.errors import MeldError
from meldctl.settings import Settings, render_toml


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
            task = self._tasks[label] = self.bars.add_task(f"caching {label}", total=total, info="")
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
        keys = (
            "train_loss",
            "dev_loss",
            "dev_emotion_accuracy",
            "dev_emotion_weighted_f1",
            "dev_sentiment_accuracy",
            "dev_sentiment_weighted_f1",
        )
        line = " ".join([f"epoch={record['epoch']}", *(f"{k}={record[k]:.4f}" for k in keys)])
        # soft_wrap: a job's log is no terminal, and a wrapped line would hide metrics from SageMaker's regexes.
        self.bars.console.print(
            f"[meldctl] {line}{'  (best)' if record.get('improved') else ''}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def note(self, text: str) -> None:
        self.bars.console.print(text)


def default_run_dir(settings: Settings) -> Path:
    return settings.train.runs_root / time.strftime("%Y%m%d-%H%M%S")


def run_local(settings: Settings, *, resume: Path | None, as_json: bool) -> None:
    """Train on this machine (or as one torchrun process), honouring the SageMaker contract inside a job."""
    from meldctl.training.sagemaker_env import detect

    job = detect()
    is_main = os.environ.get("RANK", "0") == "0"  # torchrun: only rank 0 writes files, logs and reports
    try:
        if job is not None:
            settings = job.apply(settings)
            resume = resume or job.resume_from()
        run_dir = settings.train.run_dir or _resume_folder(resume) or default_run_dir(settings)
        result = _train(settings, run_dir, resume, is_main)
    except BaseException as exc:
        if job is not None and not isinstance(exc, KeyboardInterrupt):
            job.fail(str(exc) or type(exc).__name__)
        raise
    if job is not None and result.best_path is not None:
        job.export(result.run_dir)
    if is_main:
        _render(result, as_json)
    if result.stopped == "interrupted":
        if is_main:
            console.print(
                f"[yellow]Stopped by {result.signal}; saved {result.last_path}.[/] Resume with: "
                f"meldctl train --resume {result.run_dir}",
                soft_wrap=True,
            )
        raise SystemExit(130 if result.signal == "SIGINT" else 143)


def _resume_folder(resume: Path | None) -> Path | None:
    if resume is None:
        return None
    return resume.parent if resume.is_file() else resume


def _train(settings: Settings, run_dir: Path, resume: Path | None, is_main: bool) -> Any:
    from meldctl.training.signals import GracefulStop
    from meldctl.training.trainer import run_training

    if is_main:
        from meldctl.io import write_text_atomic

        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "settings.toml", render_toml(settings, commented=False))
    with GracefulStop() as stop, RichReporter() as reporter:
        try:
            result = run_training(
                settings.data,
                settings.model,
                settings.train,
                run_dir=run_dir,
                resume=resume,
                reporter=reporter if is_main else None,
                should_stop=stop,
            )
        except MeldError as exc:
            from meldctl.data.cache import Interrupted

            if isinstance(exc, Interrupted):
                exc.hint = "run the same command again: the cache build continues where it stopped"
            raise
    result.signal = stop.requested
    return result


def _render(result: Any, as_json: bool) -> None:
    summary = {
        "run_dir": str(result.run_dir),
        "best_checkpoint": str(result.best_path) if result.best_path else None,
        "last_checkpoint": str(result.last_path) if result.last_path else None,
        "best_epoch": result.best_epoch,
        "best_dev": result.best_metrics,
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "skipped": result.skipped,
        "cached": result.cached,
        "tensorboard": str(result.tensorboard_dir) if result.tensorboard_dir else None,
    }
    best = " ".join(f"{k}={v:.4f}" for k, v in result.best_metrics.items())
    console.print(f"[meldctl] best epoch={result.best_epoch} {best}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"Training run {result.run_dir}")
    table.add_column("")
    table.add_column("value")
    table.add_row("stopped", result.stopped)
    table.add_row("epochs run", str(result.epochs_run))
    table.add_row("best epoch", str(result.best_epoch))
    for key, value in result.best_metrics.items():
        table.add_row(key, f"{value:.4f}")
    table.add_row("skipped utterances", ", ".join(f"{s}: {dict(c)}" for s, c in result.skipped.items() if c) or "none")
    table.add_row("cached features", ", ".join(result.cached) or "none")
    table.add_row("best.pt", summary["best_checkpoint"] or "-")
    table.add_row("TensorBoard", f"tensorboard --logdir {result.tensorboard_dir}")
    console.print(table)
    sys.stderr.flush()
