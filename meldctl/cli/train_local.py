"""Local training for `meldctl train`: progress bars, the run folder, the summary."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from meldctl.cli.common import console, print_json
from meldctl.cli.progress import RichReporter
from meldctl.errors import MeldError
from meldctl.settings import Settings, render_toml
from meldctl.training.metrics import best_line


def default_run_dir(settings: Settings) -> Path:
    return settings.train.runs_root / time.strftime("%Y%m%d-%H%M%S")


def run_local(settings: Settings, *, resume: Path | None, as_json: bool) -> None:
    """Train on this machine (or as one torchrun process); `meldctl.cli.train_job` runs it inside a SageMaker job."""
    is_main = os.environ.get("RANK", "0") == "0"  # torchrun: only rank 0 writes files, logs and reports
    run_dir = settings.train.run_dir or _resume_folder(resume) or default_run_dir(settings)
    result = _train(settings, run_dir, resume, is_main)
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
    console.print(best_line(result.best_epoch, result.best_metrics), markup=False, highlight=False, soft_wrap=True)
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
