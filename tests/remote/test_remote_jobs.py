from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from aws_servers import ROLE, aws_env, create_training_job, model_archive, moto_server, s3_client, s3_server  # noqa: F401
from botocore.exceptions import ClientError

from meldctl.errors import RemoteError
from meldctl.remote.aws import explain_client_error, session
from meldctl.remote.cloudwatch import LOG_GROUP, LogLine
from meldctl.remote.jobs import StatusChange, describe_job, download_model, follow_job, list_jobs


def test_describe_and_list_meldctl_jobs(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-aa-1")
    create_training_job(aws_env, "someone-else-1")
    client = boto3.client("sagemaker")
    status = describe_job(client, "meldctl-aa-1")
    assert status.done and status.status == "Completed" and status.instance_type == "ml.g5.xlarge"
    assert status.model_uri == f"s3://{aws_env}/meldctl/meldctl-aa-1/output/meldctl-aa-1/output/model.tar.gz"
    assert [job.name for job in list_jobs(client)] == ["meldctl-aa-1"]
    with pytest.raises(RemoteError) as caught:
        describe_job(client, "meldctl-missing")
    assert "meldctl logs list" in (caught.value.hint or "")


def test_follow_yields_status_and_log_lines_until_the_end(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-bb-1")
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="meldctl-bb-1/algo-1-1")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName="meldctl-bb-1/algo-1-1",
        logEvents=[{"timestamp": now, "message": "[meldctl] epoch=1 train_loss=1.0"}],
    )
    events = list(follow_job(session(), "meldctl-bb-1", poll_s=0))
    assert isinstance(events[0], StatusChange) and events[0].status == "Completed"
    assert [e.message for e in events if isinstance(e, LogLine)] == ["[meldctl] epoch=1 train_loss=1.0"]


def test_download_model_unpacks_best_and_report(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    key = "meldctl/x/output/model.tar.gz"
    archive = model_archive({"best.pt": b"weights", "eval/report.json": b"{}", "settings.toml": b"[train]\n"})
    s3_client().put_object(Bucket=aws_env, Key=key, Body=archive)
    files = download_model(s3_client(), f"s3://{aws_env}/{key}", tmp_path / "run")
    assert (tmp_path / "run" / "best.pt").read_bytes() == b"weights"
    assert (tmp_path / "run" / "eval" / "report.json").is_file()
    assert len(files) == 3


@pytest.mark.parametrize(
    "hostile",
    [
        {"../../outside.txt": b"x"},
        {"/abs/outside.txt": b"x"},
        {"eval/..\\..\\outside.txt": b"x"},
    ],
)
def test_a_hostile_model_archive_writes_nothing(tmp_path: Path, aws_env: str, hostile: dict[str, bytes]) -> None:  # noqa: F811
    key = "meldctl/x/output/model.tar.gz"
    s3_client().put_object(Bucket=aws_env, Key=key, Body=model_archive({"best.pt": b"weights", **hostile}))
    with pytest.raises(RemoteError) as caught:
        download_model(s3_client(), f"s3://{aws_env}/{key}", tmp_path / "run")
    assert "unsafe member" in caught.value.message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_link_in_the_model_archive_is_refused(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("best.pt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    s3_client().put_object(Bucket=aws_env, Key="m/model.tar.gz", Body=buffer.getvalue())
    with pytest.raises(RemoteError, match="unsafe member"):
        download_model(s3_client(), f"s3://{aws_env}/m/model.tar.gz", tmp_path / "run")
    assert not (tmp_path / "run" / "best.pt").exists()


def test_a_damaged_model_archive_is_one_line(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    s3_client().put_object(Bucket=aws_env, Key="m/model.tar.gz", Body=b"\x1f\x8b not really gzip")
    with pytest.raises(RemoteError) as caught:
        download_model(s3_client(), f"s3://{aws_env}/m/model.tar.gz", tmp_path / "run")
    assert (
        caught.value.message.startswith("downloading the model s3://")
        and "unsafe or damaged archive" in caught.value.message
    )
    assert "\n" not in caught.value.message


def test_aws_errors_become_one_line_with_a_hint() -> None:
    quota = ClientError(
        {"Error": {"Code": "ResourceLimitExceeded", "Message": "The account-level service limit is 0 Instances"}},
        "CreateTrainingJob",
    )
    error = explain_client_error(quota, "submitting the training job", instance_type="ml.g5.xlarge")
    assert "ResourceLimitExceeded" in error.message
    assert "Service Quotas" in (error.hint or "") and "ml.g5.xlarge for training job usage" in (error.hint or "")
    missing = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "nope"}}, "PutObject")
    assert "aws s3 mb s3://b" in (explain_client_error(missing, "uploading", bucket="b").hint or "")
    denied = ClientError({"Error": {"Code": "UnrecognizedClientException", "Message": "bad token"}}, "X")
    assert "aws configure" in (explain_client_error(denied, "x").hint or "")
