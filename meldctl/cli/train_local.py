"""Local training for `meldctl train`: the run folder, resume, signals, progress, the summary."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from meldctl.cli.common import console, print_json
from meldctl.cli.progress import RichReporter
from meldctl.errors import Interrupted, MeldError
from meldctl.settings import Settings
from meldctl.training.metrics import best_line

SETTINGS_FILE = "settings.toml"


def default_run_dir(settings: Settings) -> Path:
    return settings.train.runs_root / time.strftime("%Y%m%d-%H%M%S")


def resume_checkpoint(resume: Path) -> Path:
    """`--resume` takes a run folder (its last.pt) or a last.pt file.

    Raises:
        MeldError: nothing resumable there.
    """
    path = resume / "last.pt" if resume.is_dir() else resume
    if not path.is_file():
        raise MeldError(f"--resume {resume}: no such run folder or last.pt", hint="pass a run folder or its last.pt")
    return path


def run_settings_file(resume: Path) -> Path | None:
    """The settings a run was started with, saved in its folder (None for runs that have none)."""
    folder = resume if resume.is_dir() else resume.parent
    found = folder / SETTINGS_FILE
    return found if found.is_file() else None


def run_local(settings: Settings, *, resume: Path | None, as_json: bool) -> None:
    """Train on this machine (or as one torchrun process); `meldctl.cli.train_job` runs it inside a SageMaker job."""
    is_main = os.environ.get("RANK", "0") == "0"  # torchrun: only rank 0 writes files, logs and reports
    checkpoint = resume_checkpoint(resume) if resume is not None else None
    run_dir = settings.train.run_dir or (checkpoint.parent if checkpoint else default_run_dir(settings))
    if checkpoint is None:
        _refuse_existing_run(run_dir)
    result = _train(settings, run_dir, checkpoint, is_main)
    if is_main:
        _render(result, as_json)
    if result.stopped == "interrupted":
        hint = f"resume with: meldctl train --resume {result.run_dir}"
        stopped = Interrupted(f"saved {result.last_path}", result.signal, hint=hint)
        if not is_main:
            raise SystemExit(stopped.exit_code)  # rank 0 says it
        raise stopped


def _refuse_existing_run(run_dir: Path) -> None:
    if (run_dir / "last.pt").exists() or (run_dir / "best.pt").exists():
        raise MeldError(
            f"{run_dir} already holds a training run",
            hint=f"continue it with: meldctl train --resume {run_dir}; or choose another --run-dir",
        )


def _train(settings: Settings, run_dir: Path, resume: Path | None, is_main: bool) -> Any:
    from meldctl.cli.signals import stopping_on_signals
    from meldctl.io import remove_stale_temporaries
    from meldctl.training.runs import train_with

    created = not run_dir.exists()
    remove_stale_temporaries(run_dir)
    with stopping_on_signals() as stop, RichReporter() as reporter:
        try:
            result = train_with(
                settings,
                run_dir=run_dir,
                resume=resume,
                reporter=reporter if is_main else None,
                should_stop=stop,
                stop_signal=lambda: stop.requested,
            )
        except BaseException:
            _forget(run_dir, created)
            raise
    return result


def _forget(run_dir: Path, created: bool) -> None:
    """A command that fails before its first checkpoint leaves no run folder behind."""
    if created and run_dir.is_dir() and not any(run_dir.glob("*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def _render(result: Any, as_json: bool) -> None:
    summary = {
        "run_dir": str(result.run_dir),
        "best_checkpoint": str(result.best_path) if result.best_path else None,
        "last_checkpoint": str(result.last_path) if result.last_path else None,
        "best_epoch": result.best_epoch,
        "best_dev": result.best_metrics,
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "missing": result.missing,
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
    missing = "; ".join(
        f"{split}: " + ", ".join(f"{m} {n}" for m, n in counts.items() if n)
        for split, counts in result.missing.items()
        if any(counts.values())
    )
    table.add_row("rows without a modality", missing or "none")
    table.add_row("cached features", ", ".join(result.cached) or "none")
    table.add_row("best.pt", summary["best_checkpoint"] or "-")
    table.add_row("TensorBoard", f"tensorboard --logdir {result.tensorboard_dir}")
    console.print(table)
    sys.stderr.flush()
