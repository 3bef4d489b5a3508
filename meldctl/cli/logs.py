"""`meldctl logs`: a remote run's TensorBoard files (from S3), its CloudWatch log, the recent jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_settings

app = typer.Typer(help="Follow SageMaker training jobs: TensorBoard files, CloudWatch log, recent jobs.")

Region = Annotated[str | None, typer.Option(help="AWS region (default: remote.region, else the AWS configuration).")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep going until the job ends.")]
SYNC_POLL_S = 15.0  # TensorBoard writes event files every few tens of seconds
TAIL_POLL_S = 5.0  # a few seconds between polls, as `aws logs tail --follow`
SKIPPED_EXIT = 3


@app.command("sync")
def sync(
    source: Annotated[str, typer.Argument(metavar="JOB_NAME|S3_URI", help="A training job, or an s3:// prefix.")],
    dest: Annotated[Path | None, typer.Option(help="Local folder (default RUNS_ROOT/NAME/tensorboard).")] = None,
    follow: Follow = False,
    region: Region = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON on stdout.")] = False,
) -> None:
    """Bring a job's TensorBoard event files home, copying only new files and the new tail of grown ones.

    An S3 key that would land outside the destination (absolute, `..`), or that cannot be written there (a name
    too long, a file where a folder is), is skipped with a warning; the others are synced, and the exit code is 3.
    """
    from meldctl.remote.logs import sync_tensorboard

    settings = resolve_settings(remote={"region": region})
    result = sync_tensorboard(settings, source, dest=dest, follow=follow, poll_s=SYNC_POLL_S, on_round=_round)
    for key, why in result.refused.items():
        console.print(f"[yellow]Warning:[/] skipped S3 key {escape(repr(key))}: {escape(why)}", soft_wrap=True)
    if as_json:
        print_json({"source": result.uri, "dest": result.dest, "copied": result.copied, "bytes": result.bytes,
                    "skipped_unsafe": list(result.refused), "skipped": result.refused})  # fmt: skip
    console.print(f"tensorboard --logdir {result.dest}", markup=False, soft_wrap=True)
    if result.refused:
        raise typer.Exit(SKIPPED_EXIT)


@app.command("tail")
def tail(
    job_name: Annotated[str, typer.Argument(help="The training job.")],
    follow: Follow = False,
    since: Annotated[
        str | None,
        typer.Option(help="Only lines from then on: 10m, 2h, 1d, or an ISO time (UTC) such as 2025-01-31T12:00."),
    ] = None,
    region: Region = None,
) -> None:
    """Print the job's CloudWatch log (group /aws/sagemaker/TrainingJobs), every instance; with several
    instances each line starts with its host, [algo-1], [algo-2], ..."""
    from meldctl.remote.logs import job_status, parse_since, tail_job

    try:
        since_ms = parse_since(since) if since is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    settings = resolve_settings(remote={"region": region})
    several = job_status(settings, job_name).instance_count > 1
    for line in tail_job(settings, job_name, follow=follow, poll_s=TAIL_POLL_S, since_ms=since_ms):
        typer.echo(f"[{line.host}] {line.message}" if several else line.message)


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(help="How many jobs.", min=1, max=100)] = 20,
    region: Region = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON on stdout.")] = False,
) -> None:
    """Show recent meldctl training jobs with their status and best dev emotion weighted F1."""
    from meldctl.remote.logs import recent_jobs

    jobs = recent_jobs(resolve_settings(remote={"region": region}), limit=limit)
    if as_json:
        print_json([job.__dict__ | {"best_metric": job.best_metric} for job in jobs])
        return
    table = Table(title="meldctl training jobs")
    # A job name is what every other command takes: never cut it; the other columns fold to make room.
    table.add_column("job", no_wrap=True, min_width=max((len(job.name) for job in jobs), default=3))
    for column in ("status", "instance", "created", "best dev emotion wF1"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        best = "-" if job.best_metric is None else f"{job.best_metric:.4f}"
        status = job.status if job.status == job.secondary or not job.secondary else f"{job.status} ({job.secondary})"
        table.add_row(job.name, escape(status), job.instance_type or "-", job.created or "-", best)
    console.print(table if jobs else "No meldctl training jobs found in this region.")


def _round(copied: int, status: str | None) -> None:
    if copied:
        console.print(f"synced {copied} new or grown file(s)" + (f"; job {status}" if status else ""))
