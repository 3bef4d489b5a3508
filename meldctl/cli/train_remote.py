"""`meldctl train --remote`: the SageMaker job's request (`--dry-run`), its submission, and following it."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json
from meldctl.cli.progress import RateMeter
from meldctl.settings import Settings


def submit_remote(settings: Settings, *, dry_run: bool, as_json: bool) -> None:
    """Print the job request (`dry_run`), or upload the inputs, submit the job and (with `remote.wait`) follow it."""
    from meldctl.remote import workflow

    if dry_run:
        plan = workflow.plan_job(settings)
        print_json(plan.describe()) if as_json else _render_plan(plan)
        return
    spec, submission = workflow.submit_job(settings, on_upload=_uploaded, on_progress=_Uploading())
    job = submission.job_name
    console.print(
        f"Submitted SageMaker training job [bold]{job}[/] ({spec.instance_count} x {spec.instance_type}).",
        soft_wrap=True,
    )
    if not settings.remote.wait:
        console.print(
            f"Follow it with: meldctl logs tail {job} --follow   (TensorBoard: meldctl logs sync {job})", soft_wrap=True
        )
        if as_json:
            print_json({"job_name": job, "arn": submission.arn, "status": "InProgress", "region": spec.region,
                        "request": submission.request})  # fmt: skip
        return
    if _follow(settings, job, several=spec.instance_count > 1):
        _fetch(settings, job, as_json=as_json)
    elif as_json:
        print_json({"job_name": job, "status": "detached"})


def _follow(settings: Settings, job: str, *, several: bool) -> bool:
    """Print the job's status changes and log until it ends; False when Ctrl-C detached from it."""
    from meldctl.remote import workflow
    from meldctl.remote.cloudwatch import LogLine

    try:
        for event in workflow.follow(settings, job):
            if isinstance(event, LogLine):
                text = f"[{event.host}] {event.message}" if several else event.message
                console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                detail = "" if event.secondary in ("", event.status) else f" ({escape(event.secondary)})"
                message = f": {escape(event.message)}" if event.message else ""
                console.print(f"[bold cyan]{event.status}[/]{detail}{message}", soft_wrap=True)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]Detached:[/] job {job} keeps running. Follow it with: meldctl logs tail {job} --follow "
            f"(stop it with: aws sagemaker stop-training-job --training-job-name {job})",
            soft_wrap=True,
        )
        return False
    return True


def _fetch(settings: Settings, job: str, *, as_json: bool) -> None:
    from meldctl.remote import workflow

    run_dir = settings.train.run_dir or settings.train.runs_root / job
    results = workflow.fetch_results(settings, job, run_dir)
    for key, why in results.refused.items():
        console.print(f"[yellow]Warning:[/] skipped S3 key {escape(repr(key))}: {escape(why)}", soft_wrap=True)
    if as_json:
        print_json({"job_name": job, "status": results.status.status, "run_dir": run_dir, "files": results.files,
                    "metrics": results.status.metrics, "tensorboard": results.tensorboard})  # fmt: skip
        return
    for path in results.files:
        console.print(f"  {path}", markup=False, soft_wrap=True)
    console.print(f"Job {job} completed; its model is in {run_dir}. TensorBoard:", soft_wrap=True)
    console.print(f"tensorboard --logdir {results.tensorboard}", markup=False, soft_wrap=True)


class _Uploading:
    """A line every few seconds while a channel uploads: files sent, rate, ETA."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.meters: dict[str, RateMeter] = {}

    def __call__(self, upload: Any, done: int, total: int) -> None:
        meter = self.meters.setdefault(upload.channel, RateMeter(total, self.every_s))
        if meter.due(done):
            console.print(f"  {upload.channel}: {meter.summary(done, 'files')}", style="dim", markup=False)


def _uploaded(upload: Any, transfer: Any) -> None:
    moved, kept = len(transfer.moved), len(transfer.skipped)
    console.print(f"{upload.channel}: {moved} file(s) uploaded, {kept} unchanged -> {upload.uri}", soft_wrap=True)


def _render_plan(plan: Any) -> None:
    spec, request = plan.spec, plan.submission.request
    table = Table(title=f"SageMaker training job {request['TrainingJobName']} (dry run, nothing submitted)")
    table.add_column("")
    table.add_column("value", overflow="fold")
    resources, stopping = request["ResourceConfig"], request["StoppingCondition"]
    channels = [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in request["InputDataConfig"]]
    rows = [
        ("region", spec.region),
        ("instance", f"{resources['InstanceCount']} x {resources['InstanceType']} ({resources['VolumeSizeInGB']} GB)"),
        ("image", request["AlgorithmSpecification"]["TrainingImage"]),
        ("role", request["RoleArn"]),
        ("command", spec.command),
        ("max run", f"{stopping['MaxRuntimeInSeconds']} s"),
        ("spot", f"yes, max wait {stopping['MaxWaitTimeInSeconds']} s" if spec.spot else "no"),
        ("network isolation", "yes" if request.get("EnableNetworkIsolation") else "no"),
        *((f"channel {name}", uri) for name, uri in channels),
        *((f"upload {u.channel}", f"{u.local} -> {u.uri}") for u in spec.uploads),
        ("hyperparameters", " ".join(f"{k}={v}" for k, v in request["HyperParameters"].items())),
        ("checkpoints", f"{spec.checkpoint_dir} <-> {spec.uri('checkpoints')}"),
        ("TensorBoard", f"{spec.tensorboard_dir} -> {spec.uri('tensorboard')}"),
        ("model", f"{spec.uri('output')}/{request['TrainingJobName']}/output/model.tar.gz"),
    ]
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    console.print(table)
    for problem in spec.problems():
        console.print(f"[yellow]Warning:[/] {escape(problem)}; run meldctl prepare or pass --data s3://...")
