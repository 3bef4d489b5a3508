"""`meldctl train --remote` below the CLI: plan (dry run), upload and submit, follow, bring the results home."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from meldctl import __version__
from meldctl.errors import DataError, RemoteError
from meldctl.remote import aws
from meldctl.remote.cloudwatch import LogLine
from meldctl.remote.images import import_sdk
from meldctl.remote.jobs import JobStatus, StatusChange, describe_job, download_model, follow_job
from meldctl.remote.jobspec import ChannelUpload, JobSpec, build_job_spec
from meldctl.remote.s3 import Transfer, object_exists, s3_client, sync_down, upload_file, upload_folder
from meldctl.remote.submit import Submission, create_job, dry_run_session
from meldctl.settings import Settings


@dataclass(frozen=True)
class JobPlan:
    """A job as it would be submitted: its spec and the request the SageMaker SDK would send."""

    spec: JobSpec
    submission: Submission

    def describe(self) -> dict[str, Any]:
        """The request plus what happens around it: uploads, source code, command, region."""
        spec = self.spec
        return {
            "region": spec.region,
            "job_name": self.submission.job_name,
            "command": spec.command,
            "distributed": "torchrun" if spec.distributed else None,
            "source_code": {"meldctl_version": __version__, "requirements": spec.requirements},
            "uploads": [
                {"channel": u.channel, "from": str(u.local), "to": u.uri, "exclude": list(u.exclude)}
                for u in spec.uploads
            ],
            "request": self.submission.request,
            "problems": spec.problems(),
        }


@dataclass
class Results:
    """What a finished job left here: its status, the unpacked model files, the TensorBoard folder."""

    status: JobStatus
    run_dir: Path
    files: list[Path] = field(default_factory=list)
    tensorboard: Path | None = None
    refused: dict[str, str] = field(default_factory=dict)


@aws.aws_boundary("planning the training job")
def plan_job(settings: Settings) -> JobPlan:
    """The job these settings make, built by the SageMaker SDK with every AWS call answered locally.

    Needs no credentials and no network: only a region (flag, settings or AWS configuration).
    """
    import_sdk()
    region = aws.session(settings.remote.region, need_credentials=False).region_name
    spec = build_job_spec(settings, region=region)
    return JobPlan(spec, create_job(spec, dry_run_session(region), dry_run=True))


@aws.aws_boundary("submitting the training job")
def submit_job(
    settings: Settings,
    *,
    on_upload: Callable[[ChannelUpload, Transfer], None] | None = None,
    on_progress: Callable[[ChannelUpload, int, int], None] | None = None,
) -> tuple[JobSpec, Submission]:
    """Check the bucket, upload what changed of the local inputs, and create the job with the SDK.

    Args:
        settings: The resolved settings.
        on_upload: Called with each upload and what it moved, once it is done.
        on_progress: Called with an upload, its files sent so far and the files it sends.

    Raises:
        DataError: a local data folder that is not prepared.
        RemoteError: any AWS refusal (bucket missing or in another region, quota, role, ...), in one line.
    """
    import_sdk()  # before asking for credentials: a missing SDK is the first thing to fix
    boto = aws.session(settings.remote.region)
    spec = build_job_spec(settings, region=boto.region_name)
    problems = spec.problems()
    if problems:
        raise DataError(problems[0], hint="run meldctl prepare first, or pass --data s3://BUCKET/PREFIX")
    aws.check_bucket(boto, spec.bucket)
    client = s3_client(boto)
    for upload in spec.uploads:
        with aws.aws_errors(f"uploading {upload.local}", bucket=spec.bucket):
            if upload.local.is_file():
                transfer = upload_file(client, upload.local, f"{upload.uri}/{upload.local.name}")
            else:
                progress = partial(on_progress, upload) if on_progress is not None else None
                transfer = upload_folder(client, upload.local, upload.uri, exclude=upload.exclude, on_progress=progress)
        if on_upload is not None:
            on_upload(upload, transfer)
    return spec, create_job(spec, boto)


@aws.aws_boundary("following the training job")
def follow(settings: Settings, job_name: str) -> Iterator[StatusChange | LogLine]:
    """Status changes and log lines of the job until it ends."""
    yield from follow_job(aws.session(settings.remote.region), job_name)


@aws.aws_boundary("bringing the job's results home")
def fetch_results(settings: Settings, job_name: str, run_dir: Path) -> Results:
    """Unpack the model of a completed job into `run_dir`, then sync its TensorBoard files beside it.

    Raises:
        RemoteError: the job did not complete (with its reason), its model is missing, or an unsafe archive.
    """
    boto = aws.session(settings.remote.region)
    status = describe_job(boto.client("sagemaker"), job_name)
    if status.status != "Completed":
        raise RemoteError(
            f"job {job_name} {status.status.lower()}: {status.failure_reason or status.message or 'no reason given'}",
            hint=f"read its log with: meldctl logs tail {job_name}",
        )
    s3 = boto.client("s3")
    results = Results(status, run_dir)
    if status.model_uri:
        with aws.aws_errors(f"looking for the model of job {job_name}"):
            there = object_exists(s3, status.model_uri)
        if not there:
            raise RemoteError(
                f"job {job_name} completed, but its model {status.model_uri} is missing",
                hint=f"it was deleted, or the job wrote nothing to SM_MODEL_DIR: meldctl logs tail {job_name}",
            )
        results.files = download_model(s3, status.model_uri, run_dir)
    if status.tensorboard_uri:
        results.tensorboard = run_dir / "tensorboard"
        results.refused = sync_down(s3, status.tensorboard_uri, results.tensorboard).refused
    return results
