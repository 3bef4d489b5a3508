"""The AWS fault matrix: every AWS-facing command against every broken answer, one line and exit 1 each.

The broken answers come from a real HTTP server on 127.0.0.1 that stands in for every AWS endpoint
(`aws_servers.FaultServer`): a closed port, an HTML page with 200 (a captive portal, a wrong
AWS_ENDPOINT_URL), binary garbage with 200, a 500 whose body is not UTF-8, throttling and an expired token.
botocore retries once (AWS_MAX_ATTEMPTS=2), so the retry path runs and throttling costs under a second.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from aws_servers import FAULTS, ROLE, FaultServer, aws_env, fault_env, free_port, moto_server, s3_server  # noqa: F401
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/meldctl:0.1.0"
ENDPOINT = ["--role", ROLE, "--image", IMAGE, "--instance-type", "ml.g4dn.xlarge"]


def commands(tmp_path: Path) -> dict[str, list[str]]:
    """Every command that talks to AWS, with what it needs to get as far as its first AWS call."""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"never loaded: the checks before it fail")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"stands in for a clip")
    return {
        "endpoint deploy CKPT": ["endpoint", "deploy", str(checkpoint), "--endpoint", "e", *ENDPOINT, "--bucket", "b"],
        "endpoint deploy JOB": ["endpoint", "deploy", "meldctl-job-1", "--endpoint", "e", *ENDPOINT],
        "endpoint invoke": ["endpoint", "invoke", "e", str(clip), "--text", "hi"],
        "endpoint invoke --analyze": [
            "endpoint",
            "invoke",
            "e",
            str(clip),
            "--analyze",
            "--out",
            str(tmp_path / "out"),
        ],
        "endpoint list": ["endpoint", "list"],
        "endpoint delete": ["endpoint", "delete", "e", "--yes"],
        "logs sync JOB": ["logs", "sync", "meldctl-job-1"],
        "logs sync S3": ["logs", "sync", "s3://b/meldctl/job/tensorboard"],
        "logs tail": ["logs", "tail", "meldctl-job-1"],
        "logs list": ["logs", "list"],
        "train --remote": ["train", "--remote", "--role", ROLE, "--bucket", "b", "--data", "s3://b/data/"],
    }


COMMANDS = ["endpoint deploy CKPT", "endpoint deploy JOB", "endpoint invoke", "endpoint invoke --analyze",
            "endpoint list", "endpoint delete",
            "logs sync JOB", "logs sync S3", "logs tail", "logs list", "train --remote"]  # fmt: skip


@pytest.fixture(scope="module")
def faults():  # noqa: ANN201
    server = FaultServer()
    yield server
    server.stop()


def one_line(result, url: str) -> tuple[str, str]:  # noqa: ANN001
    """The `Error:` line and the hint of a command that failed as it should: exit 1, no traceback, and nothing
    printed that looks like a success."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error:") and len(lines) <= 2, result.stderr
    hint = lines[1] if len(lines) == 2 else ""
    assert not hint or hint.startswith("Hint:"), result.stderr
    assert result.stdout == ""
    return lines[0], hint


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_fails_in_one_line_on_every_broken_answer(
    command: str, fault: str, faults: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}" if fault == "closed" else faults.url
    fault_env(monkeypatch, tmp_path, url)
    faults.fault = fault
    every = commands(tmp_path)
    assert set(every) == set(COMMANDS)
    error, hint = one_line(runner.invoke(app, every[command]), url)
    assert not (tmp_path / "out").exists()
    where = url.removeprefix("http://")
    if fault == "closed":
        assert "Could not connect to the endpoint URL" in error and where in error and "network" in hint
    elif fault == "html":
        assert f"{where} answered HTTP 200 with an HTML page, not an AWS API answer" in error
        assert "AWS_ENDPOINT_URL" in hint
    elif fault == "garbage":
        assert f"{where} answered HTTP 200 with 1024 bytes that are not UTF-8 text" in error
    elif fault == "bad500":
        assert where in error and "500" in error
    elif fault == "throttle":
        assert any(code in error for code in ("ThrottlingException", "SlowDown", "503")) and "again" in hint
    else:
        assert "expired" in error.lower() or "400" in error
        assert "aws configure" in hint


def test_a_false_success_on_an_html_page_is_gone(faults: FaultServer, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """What the HTML page used to make of `endpoint delete` and `endpoint list`: "deleted", "no endpoints"."""
    fault_env(monkeypatch, tmp_path, faults.url)
    faults.fault = "html"
    deleted = runner.invoke(app, ["endpoint", "delete", "e", "--yes"])
    listed = runner.invoke(app, ["endpoint", "list"])
    assert deleted.exit_code == listed.exit_code == 1
    assert "deleted" not in deleted.stderr.lower() and "No endpoints" not in listed.stderr


@pytest.mark.parametrize("fault", ["html", "garbage", "bad500", "expired"])
def test_train_remote_after_its_upload_meets_a_broken_sagemaker(
    fault: str,
    faults: FaultServer,
    tmp_path: Path,
    aws_env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 (SeaweedFS) works and takes the upload; only then does SageMaker answer garbage."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", faults.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    faults.fault = fault
    data = tmp_path / "data"
    (data / "manifest").mkdir(parents=True)
    (data / "manifest" / "train.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", aws_env, "--data", str(data),
                                 "--modalities", "text"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    lines = lines[lines.index(next(line for line in lines if line.startswith("data: 1 file(s) uploaded"))) :]
    assert lines[1].startswith("Error: submitting the training job:") and len(lines) <= 3, result.stderr
    assert faults.url.removeprefix("http://") in lines[1] if fault != "expired" else "aws configure" in lines[2]
    listed = boto3.client("s3").list_objects_v2(Bucket=aws_env, Prefix="meldctl/data/")
    assert listed["KeyCount"] == 1
