"""Every AWS failure users meet ends in one line with what to do: each is provoked for real here."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_servers import ROLE, aws_env, moto_s3_env, moto_server, no_credentials, s3_client, s3_server  # noqa: F401
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.errors import RemoteError
from meldctl.remote.aws import aws_errors

runner = CliRunner()


def one_line_error(result) -> str:  # noqa: ANN001
    """The error of a failed command: an `Error:` line and at most a hint, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error:") and len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("Hint:"))
    return result.stderr


def aws_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    no_credentials(monkeypatch, tmp_path)
    config = tmp_path / "aws-config"
    config.write_text(f"[profile broken]\nregion = us-east-1\n{body}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "broken")


def test_an_unreachable_endpoint(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    stderr = one_line_error(runner.invoke(app, ["logs", "list"]))
    assert "Could not connect to the endpoint URL" in stderr and "network" in stderr


def test_a_failing_credential_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "creds.sh"
    script.write_text("#!/bin/sh\necho 'token expired, log in again' >&2\nexit 1\n")
    script.chmod(0o755)
    aws_profile(tmp_path, monkeypatch, f"credential_process = {script}")
    stderr = one_line_error(runner.invoke(app, ["logs", "list"]))
    assert "credential_process" in stderr and "token expired" in stderr


def test_an_sso_profile_without_a_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws/sso/cache
    aws_profile(tmp_path, monkeypatch, "sso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n"
                "sso_account_id = 123456789012\nsso_role_name = Admin")  # fmt: skip
    stderr = one_line_error(runner.invoke(app, ["logs", "list"]))
    assert "aws sso login" in stderr


def test_a_failed_s3_upload(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    with pytest.raises(RemoteError) as caught, aws_errors("uploading f.bin"):
        s3_client().upload_file(str(path), "meldctl-no-such-bucket", "f.bin")  # boto3's S3UploadFailedError
    assert caught.value.message.startswith("uploading f.bin: Failed to upload")
    assert "\n" not in caught.value.message and "bucket" in (caught.value.hint or "")


def test_a_bucket_in_another_region_is_refused_before_any_upload(
    tmp_path: Path,
    moto_s3_env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3_client().create_bucket(
        Bucket="meldctl-in-ireland", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    data = tmp_path / "data"
    (data / "manifest").mkdir(parents=True)
    (data / "manifest" / "train.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", "meldctl-in-ireland",
                                 "--region", "us-east-1", "--data", str(data)])  # fmt: skip
    stderr = one_line_error(result)
    assert "meldctl-in-ireland is in eu-west-1" in stderr and "--region eu-west-1" in stderr
    assert "Contents" not in s3_client().list_objects_v2(Bucket="meldctl-in-ireland")


def test_a_missing_bucket_is_named(aws_env: str) -> None:  # noqa: F811
    result = runner.invoke(app, ["train", "--remote", "--role", ROLE, "--bucket", "meldctl-no-such-bucket",
                                 "--data", "s3://x/d/"])  # fmt: skip
    stderr = one_line_error(result)
    assert "meldctl-no-such-bucket" in stderr and "aws s3 mb" in stderr
