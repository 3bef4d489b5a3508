"""What `meldctl logs` does: TensorBoard files of a job from S3, its CloudWatch log, the recent jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from meldctl.errors import RemoteError
from meldctl.remote import aws
from meldctl.remote.cloudwatch import LogLine, tail
from meldctl.remote.s3 import parse_s3_uri, sync_down
from meldctl.remote.sagemaker import JobStatus, describe_job, list_jobs
from meldctl.settings import Settings


@dataclass
class SyncResult:
    """Where the files came from and went, and how much moved over all rounds."""

    uri: str
    dest: Path
    copied: int = 0
    bytes: int = 0
    rounds: int = 0


def sync_tensorboard(
    settings: Settings,
    source: str,
    *,
    dest: Path | None = None,
    follow: bool = False,
    poll_s: float = 15.0,
    on_round: Callable[[int, str | None], None] | None = None,
) -> SyncResult:
    """Copy the TensorBoard event files of a job (or of an `s3://` prefix) into `dest`, incrementally.

    Args:
        settings: `remote.region` and `train.runs_root` (the default destination is RUNS_ROOT/NAME/tensorboard).
        source: A training job name or an `s3://` prefix.
        dest: The local folder.
        follow: Sync again every `poll_s` seconds until the job ends (a job name only).
        on_round: Called after each round with the number of files copied and the job's status.

    Raises:
        RemoteError: an unknown job, a job without TensorBoard output, --follow with an S3 URI, AWS errors.
    """
    boto = aws.session(settings.remote.region)
    s3 = boto.client("s3")
    sagemaker = boto.client("sagemaker")
    if source.startswith("s3://"):
        if follow:
            raise RemoteError("--follow needs a job name: an S3 URI has no job to wait for", hint="drop --follow")
        _, key = parse_s3_uri(source)
        uri, name, status = source, key.rstrip("/").rsplit("/", 1)[-1] or "tensorboard", None
    else:
        status = describe_job(sagemaker, source)
        if not status.tensorboard_uri:
            raise RemoteError(f"job {source} has no TensorBoard output", hint="it was not submitted by meldctl")
        uri, name = status.tensorboard_uri, source
    result = SyncResult(uri=uri, dest=dest or settings.train.runs_root / name / "tensorboard")
    bucket, _ = parse_s3_uri(uri)
    while True:
        with aws.aws_errors(f"syncing {uri}", bucket=bucket):
            transfer = sync_down(s3, uri, result.dest)
        result.copied += len(transfer.moved)
        result.bytes += transfer.bytes
        result.rounds += 1
        if on_round is not None:
            on_round(len(transfer.moved), status.status if status else None)
        if not follow or status is None or status.done:
            return result
        time.sleep(poll_s)
        status = describe_job(sagemaker, source)


def tail_job(settings: Settings, job_name: str, *, follow: bool = False, poll_s: float = 15.0) -> Iterator[LogLine]:
    """The CloudWatch log lines of a job; with `follow`, until the job ends.

    Raises:
        RemoteError: an unknown job or an AWS error.
    """
    boto = aws.session(settings.remote.region)
    sagemaker = boto.client("sagemaker")
    describe_job(sagemaker, job_name)  # an unknown job fails here with a clear message

    def is_done() -> bool:
        return describe_job(sagemaker, job_name).done

    with aws.aws_errors(f"reading the log of {job_name}"):
        yield from tail(boto.client("logs"), job_name, follow=follow, is_done=is_done, poll_s=poll_s)


def recent_jobs(settings: Settings, *, limit: int = 20) -> list[JobStatus]:
    """The newest meldctl training jobs in the region, newest first."""
    boto = aws.session(settings.remote.region)
    return list_jobs(boto.client("sagemaker"), limit=limit)
