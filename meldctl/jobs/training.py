"""`meldctl train` inside a SageMaker training job: resume, train, score the test split, export the model.

The job's settings are resolved once, by `load_settings(job=job.settings_layer())`; this module only runs
them. What ends up in `model.tar.gz` (SM_MODEL_DIR): `best.pt`, `settings.toml` and `eval/test/` (report.json
and the confusion matrices of best.pt on the test split). A stop or a spot interruption (SIGTERM, polled through
`should_stop`) leaves `last.pt` in the checkpoint folder and exports nothing: SageMaker resumes the job from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meldctl.reporting import Reporter
from meldctl.settings import Settings
from meldctl.training.runs import train_with
from meldctl.training.sagemaker_env import SageMakerJob
from meldctl.training.trainer import TrainResult

EVAL_SPLIT = "test"


@dataclass
class JobOutcome:
    """What a job's run did: the training result, the test report (rank 0 only) and the exported files."""

    result: TrainResult
    report: dict[str, Any] | None = None
    exported: list[Path] = field(default_factory=list)
    note: str | None = None


def run_job(
    settings: Settings,
    job: SageMakerJob,
    *,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> JobOutcome:
    """Train with the job's settings, resuming from the checkpoint folder; then evaluate and export (rank 0).

    Any failure is written to the job's failure file (SageMaker's FailureReason) before it propagates, unless a
    stop was requested: an interrupted cache build is a stop, not a failure.

    Args:
        settings: Resolved with the job's layer (folders, hyperparameters).
        job: The job this process runs in (`meldctl.training.sagemaker_env.detect`).
        reporter: Progress callbacks (None on ranks other than 0).
        should_stop: Polled every batch; true saves last.pt and stops (SIGTERM on stop or spot interruption).
    """
    with job.failures_reported(stopping=should_stop):
        return _run(settings, job, reporter or Reporter(), should_stop)


def _run(settings: Settings, job: SageMakerJob, reporter: Reporter, should_stop: Callable[[], bool]) -> JobOutcome:
    job.prepare_data()
    run_dir = settings.train.run_dir or job.run_dir
    resume = job.resume_from()
    if resume is not None:
        reporter.note(f"resuming from {resume}")
    result = train_with(settings, run_dir=run_dir, resume=resume, reporter=reporter, should_stop=should_stop)
    outcome = JobOutcome(result)
    if result.stopped == "interrupted" or job.rank != 0 or result.best_path is None:
        return outcome
    outcome.report, outcome.note = _evaluate(settings, result.best_path, run_dir, reporter)
    outcome.exported = job.export(run_dir)
    return outcome


def _evaluate(
    settings: Settings, checkpoint: Path, run_dir: Path, reporter: Reporter
) -> tuple[dict[str, Any] | None, str | None]:
    """`meldctl eval` of best.pt on the test split into RUN_DIR/eval/test, when the data has that split."""
    from meldctl.data.manifest import manifest_path
    from meldctl.evaluation import evaluate_checkpoint

    data_dir = settings.data.data_dir
    if EVAL_SPLIT not in settings.data.splits or not manifest_path(data_dir, EVAL_SPLIT).is_file():
        return None, f"no {EVAL_SPLIT} split in {data_dir}: model.tar.gz holds no evaluation report"
    evaluation = evaluate_checkpoint(
        checkpoint,
        data_dir,
        EVAL_SPLIT,
        out_dir=run_dir / "eval" / EVAL_SPLIT,
        device=settings.train.device,
        workers=settings.train.workers,
        use_cache=settings.data.cache,
        reporter=reporter,
    )
    return evaluation.report, None
