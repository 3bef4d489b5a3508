"""What `meldctl logs` does: TensorBoard files of a job from S3, its CloudWatch log, the recent jobs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from meldctl.errors import RemoteError
from meldctl.remote import aws
from meldctl.remote.cloudwatch import LogLine, tail
from meldctl.remote.jobs import JobStatus, describe_job, list_jobs
from meldctl.remote.s3 import parse_s3_uri, sync_down
from meldctl.settings import Settings

_SPAN = re.compile(r"(\d+)([smhdw])")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class SyncResult:
    """Where the files came from and went, how much moved over all rounds, and the keys skipped (with why)."""

    uri: str
    dest: Path
    copied: int = 0
    bytes: int = 0
    rounds: int = 0
    refused: dict[str, str] = field(default_factory=dict)


@aws.aws_boundary("syncing TensorBoard files")
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

    Keys that have no safe place under `dest`, or cannot be written there, are skipped and listed in
    `SyncResult.refused` with the reason; the rest are synced.

    Args:
        settings: `remote.region` and `train.runs_root` (the default destination is RUNS_ROOT/NAME/tensorboard).
        source: A training job name or an `s3://` prefix.
        dest: The local folder.
        follow: Sync again every `poll_s` seconds until the job ends (a job name only).
        poll_s: Seconds between two rounds with `follow`.
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
    while True:
        transfer = sync_down(s3, uri, result.dest)
        result.copied += len(transfer.moved)
        result.bytes += transfer.bytes
        result.rounds += 1
        result.refused |= transfer.refused
        if on_round is not None:
            on_round(len(transfer.moved), status.status if status else None)
        if not follow or status is None or status.done:
            return result
        time.sleep(poll_s)
        status = describe_job(sagemaker, source)


@aws.aws_boundary("describing the job")
def job_status(settings: Settings, job_name: str) -> JobStatus:
    """The job's status (an unknown job fails here, with a hint)."""
    return describe_job(aws.session(settings.remote.region).client("sagemaker"), job_name)


@aws.aws_boundary("reading the job's log")
def tail_job(
    settings: Settings, job_name: str, *, follow: bool = False, poll_s: float = 5.0, since_ms: int | None = None
) -> Iterator[LogLine]:
    """The CloudWatch log lines of a job (every instance), from `since_ms` on; with `follow`, until it ends."""
    boto = aws.session(settings.remote.region)
    sagemaker = boto.client("sagemaker")

    def is_done() -> bool:
        return describe_job(sagemaker, job_name).done

    yield from tail(boto.client("logs"), job_name, follow=follow, is_done=is_done, poll_s=poll_s, since_ms=since_ms)


@aws.aws_boundary("listing training jobs")
def recent_jobs(settings: Settings, *, limit: int = 20) -> list[JobStatus]:
    """The newest meldctl training jobs in the region, newest first."""
    return list_jobs(aws.session(settings.remote.region).client("sagemaker"), limit=limit)


def parse_since(text: str, now: datetime | None = None) -> int:
    """`--since`: a span back from now (`90s`, `10m`, `2h`, `1d`, `1w`, `1h30m`) or an ISO time; epoch ms.

    An ISO time without a zone is UTC, as in CloudWatch.

    Raises:
        ValueError: neither form.
    """
    now = now or datetime.now(UTC)
    text = text.strip()
    spans = _SPAN.findall(text)
    if spans and "".join(n + u for n, u in spans) == text:
        seconds = sum(int(n) * _SPAN_SECONDS[u] for n, u in spans)
        return int((now.timestamp() - seconds) * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a span (10m, 2h, 1d) nor an ISO time (2025-01-31T12:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
