"""`meldctl serve`: the SageMaker container contract (a real server process) and one-line start-up errors."""

from __future__ import annotations

import socket
import tarfile
from pathlib import Path

import pytest
import requests
from aws_servers import aws_env, free_port, moto_server, s3_client, s3_server  # noqa: F401
from serve_servers import start_serve
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def _unpacked_model(trained_run: Path, folder: Path) -> Path:
    """What SageMaker does with the model.tar.gz that `endpoint deploy` uploads: unpack it into the model folder."""
    from meldctl.remote.endpoint_spec import package_checkpoint

    archive = package_checkpoint(trained_run / "best.pt", folder / "model.tar.gz")
    model_dir = folder / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def test_in_a_sagemaker_container_serve_needs_no_argument(
    trained_run: Path,
    tmp_path: Path,
    aws_env: str,  # noqa: F811
) -> None:
    clip = sorted((trained_run.parent / "data" / "clips" / "test").glob("*.mp4"))[0]
    s3_client().upload_file(str(clip), aws_env, "requests/clip.mp4")
    port = free_port()
    env = {
        "SM_MODEL_DIR": str(_unpacked_model(trained_run, tmp_path)),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MELDCTL_SERVE__ALLOW_S3": f"{aws_env}/requests",  # what `endpoint deploy` sets: the deploy bucket's prefix
    }
    server = start_serve([], tmp_path / "container", env=env)
    try:
        assert requests.get(f"{server.url}/ping", timeout=5).status_code == 200
        assert requests.get(f"{server.url}/health", timeout=5).json()["serving"]["allow_s3"] == [f"{aws_env}/requests"]
        with open(clip, "rb") as handle:
            posted = requests.post(f"{server.url}/invocations", files={"clip": ("clip.mp4", handle)},
                                   data={"text": "Hi"}, timeout=120)  # fmt: skip
        assert posted.status_code == 200, posted.text
        fetched = requests.post(
            f"{server.url}/invocations",
            json={"text": "Hi", "clip_s3": f"s3://{aws_env}/requests/clip.mp4"},
            timeout=120,
        )
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == {**posted.json(), "clip": f"s3://{aws_env}/requests/clip.mp4"}
        missing = requests.post(
            f"{server.url}/invocations", json={"text": "Hi", "clip_s3": f"s3://{aws_env}/requests/nope.mp4"}, timeout=60
        )
        assert (
            missing.status_code == 400 and f"no object at s3://{aws_env}/requests/nope.mp4" in missing.json()["error"]
        )
        assert server.leftovers() == []
    finally:
        server.stop()
    log = server.log.read_text()
    assert f"listening on 0.0.0.0:{port}" in log and "SageMaker model folder" in log


def test_a_port_in_use_is_one_line(trained_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", str(trained_run / "best.pt"), "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "Traceback" not in result.output


def test_a_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint")
    result = runner.invoke(app, ["serve", str(notes), "--port", "0"])
    assert result.exit_code == 1 and "not a meldctl checkpoint" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"SM_MODEL_DIR": "{tmp}"}, 1, "no best.pt in the model folder"),
        ({"SAGEMAKER_BIND_TO_PORT": "http"}, 2, "SAGEMAKER_BIND_TO_PORT='http' is not a port number"),
        ({}, 1, "no checkpoint given and none found under runs/*/best.pt"),
    ],
)
def test_start_up_problems_are_one_line(
    env: dict[str, str], code: int, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    result = runner.invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow-s3", "Not A Bucket/x"], "is not BUCKET or BUCKET/PREFIX"),
        (["--max-upload-mb", "0"], "serve.max_upload_mb"),
        (["--device", "tpu"], "serve.device"),
    ],
)
def test_bad_serve_settings_are_one_line(trained_run: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", str(trained_run / "best.pt"), "--port", "0", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
