"""Training jobs after submission: status, the recent ones, following one, and bringing its model home."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meldctl.errors import RemoteError
from meldctl.io import atomic_path
from meldctl.remote.aws import aws_errors
from meldctl.remote.cloudwatch import LogLine, LogTail
from meldctl.remote.jobspec import BEST_METRIC, JOB_PREFIX
from meldctl.remote.s3 import download_file, local_target, parse_s3_uri

TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
FOLLOW_POLL_S = 5.0


@dataclass(frozen=True)
class JobStatus:
    """What DescribeTrainingJob says about a job, reduced to what meldctl shows."""

    name: str
    status: str
    secondary: str
    message: str
    failure_reason: str | None
    model_uri: str | None
    tensorboard_uri: str | None
    instance_type: str | None
    instance_count: int
    created: str | None
    metrics: dict[str, float]

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def best_metric(self) -> float | None:
        """The best dev emotion weighted F1 the job reported (else the last one), if any."""
        return self.metrics.get(f"best_{BEST_METRIC}", self.metrics.get(BEST_METRIC))


@dataclass(frozen=True)
class StatusChange:
    """A new (secondary) status of a job being followed."""

    status: str
    secondary: str
    message: str


def describe_job(client: Any, job_name: str) -> JobStatus:
    """The job's status, outputs and final metrics.

    Raises:
        RemoteError: no such job (or an AWS error).
    """
    with aws_errors(f"describing job {job_name}"):
        found = client.describe_training_job(TrainingJobName=job_name)
    transitions = found.get("SecondaryStatusTransitions") or []
    created = found.get("CreationTime")
    resources = found.get("ResourceConfig") or {}
    return JobStatus(
        name=found["TrainingJobName"],
        status=found.get("TrainingJobStatus", "Unknown"),
        secondary=found.get("SecondaryStatus", ""),
        message=(transitions[-1].get("StatusMessage", "") if transitions else ""),
        failure_reason=found.get("FailureReason"),
        model_uri=(found.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        tensorboard_uri=(found.get("TensorBoardOutputConfig") or {}).get("S3OutputPath"),
        instance_type=resources.get("InstanceType"),
        instance_count=int(resources.get("InstanceCount") or 1),
        created=created.isoformat(timespec="seconds") if created is not None else None,
        metrics={m["MetricName"]: m["Value"] for m in found.get("FinalMetricDataList") or []},
    )


def list_jobs(client: Any, *, limit: int = 20) -> list[JobStatus]:
    """The newest meldctl training jobs (named `meldctl-*`), newest first."""
    with aws_errors("listing training jobs"):
        page = client.list_training_jobs(
            NameContains=JOB_PREFIX, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
        )
    names = [
        j["TrainingJobName"]
        for j in page.get("TrainingJobSummaries", [])
        if j["TrainingJobName"].startswith(JOB_PREFIX)
    ]
    return [describe_job(client, name) for name in names]


def follow_job(boto_session: Any, job_name: str, *, poll_s: float = FOLLOW_POLL_S) -> Iterator[StatusChange | LogLine]:
    """Status changes and log lines of a job until it ends (Completed, Failed or Stopped)."""
    client = boto_session.client("sagemaker")
    tail = LogTail(boto_session.client("logs"), job_name)
    last: tuple[str, str] | None = None
    while True:
        status = describe_job(client, job_name)
        if (status.status, status.secondary) != last:
            last = (status.status, status.secondary)
            yield StatusChange(status.status, status.secondary, status.message)
        with aws_errors(f"reading the log of {job_name}"):
            yield from tail.poll()
        if status.done:
            return
        time.sleep(poll_s)


def download_model(client: Any, model_uri: str, dest: Path) -> list[Path]:
    """Download `model.tar.gz` and unpack its files (best.pt, the eval report, settings.toml) into `dest`.

    Every member is checked before anything is written: a link, a device, or a name that would land outside
    `dest` refuses the whole archive.

    Raises:
        RemoteError: an AWS failure, or an unsafe or damaged archive.
    """
    bucket, _ = parse_s3_uri(model_uri)
    with (
        tempfile.TemporaryDirectory(prefix="meldctl-model-") as tmp,
        aws_errors(f"downloading the model {model_uri}", bucket=bucket),
    ):
        archive = download_file(client, model_uri, Path(tmp) / "model.tar.gz")
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar, dest)
            tar.extractall(Path(tmp) / "unpacked", members=[m for m, _ in members], filter="data")
        written = []
        for member, target in members:
            with atomic_path(target) as part:
                shutil.copyfile(Path(tmp) / "unpacked" / member.name, part)
            written.append(target)
    return written


def _safe_members(tar: tarfile.TarFile, dest: Path) -> list[tuple[tarfile.TarInfo, Path]]:
    """(member, where it goes) for the regular files of the archive.

    Raises:
        RemoteError: a member that is neither a file nor a folder, or whose name is unsafe.
    """
    found = []
    for member in tar.getmembers():
        if member.isdir():
            continue
        name = member.name.removeprefix("./")
        target = local_target(dest, name) if member.isfile() else None
        if target is None:
            raise RemoteError(
                f"model.tar.gz holds an unsafe member {member.name!r} (a link, a device, or a path outside {dest})",
                hint="the archive was not written by a meldctl job; nothing was unpacked",
            )
        found.append((member, target))
    return found
