"""`meldctl train` inside a SageMaker training job: progress into the job's log, the final metric lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meldctl.cli.common import console, print_json, resolve_settings
from meldctl.cli.progress import RichReporter
from meldctl.errors import Interrupted, MeldError

if TYPE_CHECKING:
    from meldctl.training.sagemaker_env import SageMakerJob


_RESUMES = "a job that SageMaker restarts (spot) resumes from the checkpoint folder"


def run_in_job(job: SageMakerJob, flags: dict[str, dict[str, Any]], *, as_json: bool) -> None:
    """Resolve the settings with the job's layer, then train, evaluate and export as the job `job`.

    A bad hyperparameter, like any failure, is written to the job's failure file. SIGTERM (a stop, a spot
    interruption) saves last.pt into the checkpoint folder and exits with 143; the job resumes from it when
    SageMaker restarts it.
    """
    from meldctl.jobs.training import run_job
    from meldctl.training.metrics import best_line, report_line
    from meldctl.training.signals import GracefulStop

    with job.failures_reported():
        settings = resolve_settings(job=job.settings_layer(), **flags)
    is_main = job.rank == 0
    with GracefulStop() as stop, RichReporter() as reporter:
        try:
            outcome = run_job(settings, job, reporter=reporter if is_main else None, should_stop=stop)
        except MeldError as exc:
            if stop.requested is None:
                raise
            raise Interrupted(exc.message, stop.requested, hint=_RESUMES) from None
    result = outcome.result
    if result.stopped == "interrupted":
        where = settings.train.checkpoint_dir or result.run_dir
        stopped = Interrupted(f"saved last.pt in {where}", stop.requested, hint=_RESUMES)
        if not is_main:
            raise SystemExit(stopped.exit_code)  # rank 0 says it
        raise stopped
    if not is_main:
        return
    # The lines SageMaker's best_* and test_* metric definitions read (soft_wrap: a wrapped line would hide them).
    console.print(best_line(result.best_epoch, result.best_metrics), markup=False, highlight=False, soft_wrap=True)
    if outcome.report is not None:
        console.print(report_line(outcome.report), markup=False, highlight=False, soft_wrap=True)
    if outcome.note:
        console.print(outcome.note, markup=False, soft_wrap=True)
    console.print(f"Model for model.tar.gz: {', '.join(str(p) for p in outcome.exported)}", markup=False,
                  soft_wrap=True)  # fmt: skip
    if as_json:
        print_json({"run_dir": result.run_dir, "best_epoch": result.best_epoch, "best_dev": result.best_metrics,
                    "test": outcome.report, "exported": outcome.exported})  # fmt: skip
