"""A training run from resolved settings: the one call of `run_training` that local training and a SageMaker
job share, and the `settings.toml` the run keeps beside its checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, Unpack

from meldctl.reporting import Reporter
from meldctl.settings import Settings, render_toml
from meldctl.training.trainer import TrainResult, run_training


def saved_settings(settings: Settings) -> str:
    """The run's settings.toml: absolute paths (a resume may start anywhere) and no run folder, so that
    `meldctl --config RUN/settings.toml train` repeats the run in a new folder instead of writing into RUN."""
    absolute = settings.model_copy(deep=True)
    absolute.data.data_dir = settings.data.data_dir.resolve()
    absolute.train.runs_root = settings.train.runs_root.resolve()
    absolute.train.run_dir = None
    return render_toml(absolute, commented=False)


class RunOptions(TypedDict, total=False):
    """`run_training`'s optional keywords, left to its defaults when not given.

    Attributes:
        resume: A last.pt to continue from.
        reporter: Progress callbacks (ignored on processes other than the main one).
        should_stop: Polled every batch; true saves last.pt and returns.
        stop_signal: The name of the signal that asked to stop, for the messages.
    """

    resume: Path | None
    reporter: Reporter | None
    should_stop: Callable[[], bool]
    stop_signal: Callable[[], str | None]


def train_with(settings: Settings, *, run_dir: Path, **options: Unpack[RunOptions]) -> TrainResult:
    """Train with `settings` into `run_dir`; the main process writes `run_dir/settings.toml` once set up.

    Args:
        settings: Resolved settings (flags, environment, TOML; inside a job, the job's layer too).
        run_dir: Where checkpoints, TensorBoard and settings.toml go.
        **options: `RunOptions`: resume, reporter, should_stop, stop_signal.
    """
    toml = saved_settings(settings)
    return run_training(settings.data, settings.model, settings.train, run_dir=run_dir, settings_toml=toml, **options)
