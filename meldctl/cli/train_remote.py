"""`meldctl train --remote`: a SageMaker training job running the same `meldctl train`, and its entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json
from meldctl.errors import RemoteError
from meldctl.settings import Settings


def submit_remote(settings: Settings, *, dry_run: bool, as_json: bool) -> None:
    """Print the job request (`dry_run`), or upload the inputs, submit the job and (with `remote.wait`) follow it."""
    from meldctl.remote import aws
    from meldctl.remote import sagemaker as sm

    region = aws.session(settings.remote.region, need_credentials=False).region_name
    spec = sm.build_job_spec(settings, region=region)
    if dry_run:
        print_json(spec.describe()) if as_json else _render_spec(spec)
        return
    sm.import_sdk()
    boto = aws.session(region)
    sm.ensure_bucket(boto, spec.bucket)
    for upload, transfer in sm.upload_inputs(spec, boto, on_file=_uploading):
        moved, kept = len(transfer.moved), len(transfer.skipped)
        console.print(f"{upload.channel}: {moved} file(s) uploaded, {kept} unchanged -> {upload.uri}")
    job = sm.submit_job(spec, boto)
    console.print(
        f"Submitted SageMaker training job [bold]{job}[/] ({spec.instance_count} x {spec.instance_type}).",
        soft_wrap=True,
    )
    if not settings.remote.wait:
        console.print(
            f"Follow it with: meldctl logs tail {job} --follow   (TensorBoard: meldctl logs sync {job})", soft_wrap=True
        )
        if as_json:
            print_json({"job_name": job, "status": "InProgress", "region": region, "request": spec.request(job)})
        return
    _follow_and_fetch(settings, boto, job, as_json=as_json)


def _follow_and_fetch(settings: Settings, boto: Any, job: str, *, as_json: bool) -> None:
    from meldctl.remote import sagemaker as sm
    from meldctl.remote.cloudwatch import LogLine
    from meldctl.remote.s3 import sync_down

    several = settings.remote.instance_count > 1
    try:
        for event in sm.follow_job(boto, job):
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
        if as_json:
            print_json({"job_name": job, "status": "detached"})
        return
    status = sm.describe_job(boto.client("sagemaker"), job)
    if status.status != "Completed":
        raise RemoteError(
            f"job {job} {status.status.lower()}: {status.failure_reason or status.message or 'no reason given'}",
            hint=f"read its log with: meldctl logs tail {job}",
        )
    run_dir = settings.train.run_dir or settings.train.runs_root / job
    s3 = boto.client("s3")
    files = sm.download_model(s3, status.model_uri, run_dir) if status.model_uri else []
    tensorboard = run_dir / "tensorboard"
    if status.tensorboard_uri:
        sync_down(s3, status.tensorboard_uri, tensorboard)
    if as_json:
        print_json({"job_name": job, "status": status.status, "run_dir": run_dir, "files": files,
                    "metrics": status.metrics, "tensorboard": tensorboard})  # fmt: skip
        return
    for path in files:
        console.print(f"  {path}", markup=False, soft_wrap=True)
    console.print(f"Job {job} completed; its model is in {run_dir}. TensorBoard:", soft_wrap=True)
    console.print(f"tensorboard --logdir {tensorboard}", markup=False, soft_wrap=True)


def _uploading(relative: str, size: int) -> None:
    console.print(f"  uploading {relative} ({size / 1e6:.1f} MB)", style="dim", markup=False)


def _render_spec(spec: Any) -> None:
    request = spec.request()
    table = Table(title=f"SageMaker training job {request['TrainingJobName']} (dry run, nothing submitted)")
    table.add_column("")
    table.add_column("value", overflow="fold")
    resources = request["ResourceConfig"]
    stopping = request["StoppingCondition"]
    channels = request["InputDataConfig"]
    rows = [
        ("region", spec.region),
        ("instance", f"{resources['InstanceCount']} x {resources['InstanceType']} ({resources['VolumeSizeInGB']} GB)"),
        ("image", spec.image),
        ("role", spec.role),
        ("distributed", "torchrun" if spec.distributed else "single process"),
        ("max run", f"{stopping['MaxRuntimeInSeconds']} s"),
        ("spot", f"yes, max wait {stopping['MaxWaitTimeInSeconds']} s" if spec.spot else "no"),
        *((f"channel {c['ChannelName']}", c["DataSource"]["S3DataSource"]["S3Uri"]) for c in channels),
        *((f"upload {u.channel}", f"{u.local} -> {u.uri}") for u in spec.uploads),
        ("hyperparameters", " ".join(f"{k}={v}" for k, v in request["HyperParameters"].items())),
        ("checkpoints", f"{spec.checkpoint_dir} <-> {spec.checkpoint_uri}"),
        ("TensorBoard", f"{spec.tensorboard_dir} -> {spec.tensorboard_uri}"),
        ("model", f"{spec.output_path}/{request['TrainingJobName']}/output/model.tar.gz"),
    ]
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    console.print(table)
    for problem in spec.problems():
        console.print(f"[yellow]Warning:[/] {escape(problem)}; run meldctl prepare or pass --data s3://...")


def run_in_job(argv: list[str]) -> int:
    """The job's entry script (written by `meldctl.remote.sagemaker.stage_source`): `meldctl train` in the job.

    The SDK's driver passes the hyperparameters as `--key value` arguments and in `SM_HPS`; the container
    contract reads `SM_HPS`, so arguments only fill it when it is missing. After a successful run rank 0
    prints the best epoch's metrics for the `best_*` metric definition.
    """
    from meldctl.cli import app
    from meldctl.training.sagemaker_env import detect, hyperparameters_from_argv

    hyperparameters = hyperparameters_from_argv(argv)
    if hyperparameters and not os.environ.get("SM_HPS"):
        os.environ["SM_HPS"] = json.dumps(hyperparameters)
    try:
        app(["train"], prog_name="meldctl")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    job = detect()
    if code == 0 and job is not None and job.rank == 0:
        line = best_metrics_line(job.model_dir / "best.pt")
        if line:
            print(line, flush=True)
    return code


def best_metrics_line(checkpoint: Path) -> str | None:
    """`[meldctl] best epoch=3 dev_emotion_weighted_f1=0.4876 ...` from a best.pt, or None without one."""
    if not checkpoint.is_file():
        return None
    from meldctl.model.checkpoint import read_checkpoint

    metrics = read_checkpoint(checkpoint).get("metrics") or {}
    numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if not numbers:
        return None
    epoch = numbers.pop("epoch", None)
    parts = ([f"epoch={int(epoch)}"] if epoch is not None else []) + [f"{k}={v:.4f}" for k, v in numbers.items()]
    return "[meldctl] best " + " ".join(parts)
