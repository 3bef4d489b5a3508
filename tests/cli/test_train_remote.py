from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import boto3
import pytest
from aws_servers import ROLE, aws_env, model_archive, moto_server, no_credentials, s3_client, s3_server  # noqa: F401
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.remote import workflow
from meldctl.remote.cloudwatch import LOG_GROUP

runner = CliRunner()
DRY = ["train", "--remote", "--dry-run", "--role", ROLE, "--bucket", "b", "--region", "us-east-1"]


def prepared(folder: Path) -> Path:
    (folder / "manifest").mkdir(parents=True)
    (folder / "manifest" / "train.jsonl").write_text('{"utterance": 1}\n')
    (folder / "audio" / "train").mkdir(parents=True)
    (folder / "audio" / "train" / "dia0_utt0.wav").write_bytes(b"RIFF" * 10)
    (folder / "clips" / "train").mkdir(parents=True)
    (folder / "clips" / "train" / "dia0_utt0.mp4").write_bytes(b"mp4" * 10)
    return folder


def test_dry_run_json_needs_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_credentials(monkeypatch, tmp_path)
    result = runner.invoke(app, [*DRY, "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    request = plan["request"]  # as the SageMaker SDK built it
    assert request["TrainingJobName"] == plan["job_name"]
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert request["RoleArn"] == ROLE
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith("763104351884.dkr.ecr.us-east-1.")
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 86400
    assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert request["TensorBoardOutputConfig"]["S3OutputPath"].startswith("s3://b/meldctl/")
    assert request["HyperParameters"]["train__batch_size"] == "32"
    assert {c["ChannelName"] for c in request["InputDataConfig"]} == {"data", "code", "sm_drivers"}
    assert plan["command"] == "exec ${SM_PYTHON_CMD:-python3} -m meldctl train"


def test_dry_run_table_goes_to_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, [*DRY, "--spot", "--instance-count", "2", "--data", "s3://b/data/"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "ml.g5.xlarge" in result.stderr and "meldctl.training.torchrun" in result.stderr
    assert "max wait 172800 s" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--role", ROLE], "--bucket"),
        (["--bucket", "b"], "--role"),
        (["--role", ROLE, "--bucket", "b", "--instance-type", "ml.g5.xlarg"], "ml.g5.xlarge"),
    ],
)
def test_missing_settings_give_one_line_and_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    no_credentials(monkeypatch, tmp_path)
    result = runner.invoke(app, ["train", "--remote", "--dry-run", "--region", "us-east-1", *args])
    assert result.exit_code == 2  # a setting that is missing or wrong
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error:") and says in result.stderr


def test_submitting_without_credentials_says_how_to_configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_credentials(monkeypatch, tmp_path)
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", "b", "--region", "us-east-1",
                                 "--data", "s3://b/data/"])  # fmt: skip
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.stderr and "aws configure" in result.stderr


def test_without_the_sdk_it_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sagemaker.train", None)  # import sagemaker.train now fails
    no_credentials(monkeypatch, tmp_path)
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", "b", "--region", "us-east-1",
                                 "--data", "s3://b/data/"])  # fmt: skip
    assert result.exit_code == 1
    assert "pip install 'meldctl[sagemaker]'" in result.stderr


def test_no_wait_creates_the_job_in_sagemaker(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    data = prepared(tmp_path / "data")
    args = ["train", "--remote", "--no-wait", "--role", ROLE, "--bucket", aws_env, "--data", str(data),
            "--instance-count", "2", "--spot", "--max-run", "3600", "--max-wait", "7200", "--batch-size", "8",
            "--modalities", "text,audio", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    name = json.loads(result.stdout)["job_name"]
    assert "1 file(s) uploaded" not in result.stderr and "2 file(s) uploaded" in result.stderr  # clips stay home

    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job["EnableManagedSpotTraining"] is True
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/pytorch:2.11-cu130-amzn2023-sagemaker")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert set(channels) == {"data", "code", "sm_drivers"}
    assert channels["data"].startswith(f"s3://{aws_env}/meldctl/data/data-")
    assert job["HyperParameters"]["train__batch_size"] == "8"
    assert job["HyperParameters"]["model__modalities"] == "text,audio"
    assert job["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{aws_env}/meldctl/meldctl-")
    assert job["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"

    code = channels["code"].removeprefix(f"s3://{aws_env}/")
    staged = {o["Key"] for o in s3_client().list_objects_v2(Bucket=aws_env, Prefix=code)["Contents"]}
    assert f"{code}/requirements.txt" in staged and f"{code}/meldctl/__init__.py" in staged

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 file(s) uploaded, 2 unchanged" in again.stderr


def test_wait_streams_the_log_and_brings_the_model_home(
    tmp_path: Path,
    aws_env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_create = workflow.create_job

    def create_and_run(spec, boto_session, **kwargs):  # noqa: ANN001, ANN202
        submission = real_create(spec, boto_session, **kwargs)  # moto marks the job Completed: play the container
        name = submission.job_name
        model = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)["ModelArtifacts"]
        bucket, key = model["S3ModelArtifacts"][5:].split("/", 1)
        archive = model_archive({"best.pt": b"weights", "eval/test/report.json": b"{}"})
        s3_client().put_object(Bucket=bucket, Key=key, Body=archive)
        tensorboard = spec.uri("tensorboard")[5:].split("/", 1)[1]
        s3_client().put_object(Bucket=bucket, Key=f"{tensorboard}/events.out.1", Body=b"e")
        logs = boto3.client("logs")
        logs.create_log_group(logGroupName=LOG_GROUP)
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{name}/algo-1-1")
        line = "[meldctl] epoch=1 train_loss=1.0000"
        event = {"timestamp": int(time.time() * 1000), "message": line}
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=f"{name}/algo-1-1", logEvents=[event])
        return submission

    monkeypatch.setattr(workflow, "create_job", create_and_run)
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", aws_env, "--data", "s3://x/data/"])
    assert result.exit_code == 0, result.output
    assert "[meldctl] epoch=1 train_loss=1.0000" in result.stderr
    assert "Completed" in result.stderr
    run = next((tmp_path / "runs").iterdir())
    assert (run / "best.pt").read_bytes() == b"weights" and (run / "eval" / "test" / "report.json").is_file()
    assert (run / "tensorboard" / "events.out.1").is_file()
    assert result.stderr.splitlines()[-1] == f"tensorboard --logdir {run.relative_to(tmp_path) / 'tensorboard'}"


def test_ctrl_c_while_waiting_detaches(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    def interrupted(*args: object, **kwargs: object):  # noqa: ANN202
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(workflow, "follow_job", interrupted)
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", aws_env, "--data", "s3://x/d/"])
    assert result.exit_code == 0, result.output
    assert "Detached" in result.stderr and "meldctl logs tail meldctl-" in result.stderr
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]  # the job goes on


def test_help_imports_neither_boto3_nor_the_sdk() -> None:
    import subprocess

    code = (
        "import sys; from typer.testing import CliRunner; from meldctl.cli import app;"
        "r = CliRunner().invoke(app, ['logs', '--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['doctor', '--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['weights', 'fetch', '--help']); assert r.exit_code == 0, r.output;"
        "print(sorted(m for m in ('boto3', 'botocore', 'sagemaker', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_completed_job_without_its_model_says_so(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """moto marks the job Completed, and nothing wrote its model.tar.gz: not a missing bucket."""
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", aws_env, "--data", "s3://x/d/"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "completed, but its model s3://" in error and "model.tar.gz is missing" in error, result.stderr
    assert "does not exist" not in result.stderr and "meldctl logs tail meldctl-" in result.stderr
