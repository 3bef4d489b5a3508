"""The job that `train --remote` creates, run by the SageMaker SDK's own container driver.

SageMaker runs a job created by the SDK as `/bin/bash -c "chmod +x .../sm_train.sh && .../sm_train.sh"`. That
script (written by the SDK for this very job and staged in the `sm_drivers` channel) runs the SDK's
`environment.py`, which writes every hyperparameter and channel into an env file; the script sources it under
`set -e`, installs the requirements and runs the job's command. Here a scratch folder stands in for /opt/ml: the
channels are downloaded from S3 as SageMaker does, the config files are written as SageMaker writes them, and the
SDK's scripts run with `/opt/ml` pointed at the scratch folder. Nothing of the SDK's is replaced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from aws_servers import ROLE, aws_env, moto_server, s3_client, s3_server  # noqa: F401
from helpers import copy_prepared
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.model.checkpoint import load_checkpoint, read_checkpoint

runner = CliRunner()
ML = "/opt/ml"
EPOCHS = 8  # text-only epochs on cached features take a fraction of a second; a SIGTERM after the first cannot
# arrive after the seven others (and no early stopping ends the run first)
SETTINGS = {"MELDCTL_TRAIN__PATIENCE": "0", "MELDCTL_TRAIN__EPOCHS": str(EPOCHS)}


class Container:
    """A training container for one job, with `root` in place of /opt/ml."""

    def __init__(self, root: Path, job: dict, environment: dict[str, str]) -> None:
        self.root, self.job = root, job
        self.environment = {k: self.relocate(v) for k, v in environment.items()}

    def relocate(self, text: str) -> str:
        return text.replace(ML, str(self.root))

    def provision(self) -> None:
        """What SageMaker does before starting the container: channels from S3, the config files."""
        channels = {}
        for channel in self.job["InputDataConfig"]:
            name = channel["ChannelName"]
            download_prefix(channel["DataSource"]["S3DataSource"]["S3Uri"], self.root / "input" / "data" / name)
            channels[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                              "RecordWrapperType": "None"}  # fmt: skip
        for script in (self.root / "input" / "data" / "sm_drivers").rglob("*"):
            if script.suffix in (".sh", ".py"):  # the SDK's scripts name /opt/ml literally
                script.write_text(self.relocate(script.read_text()))
        resources = {"current_host": "algo-1", "current_instance_type": self.job["ResourceConfig"]["InstanceType"],
                     "current_group_name": "homogeneousCluster", "hosts": ["algo-1"],
                     "network_interface_name": "eth0"}  # fmt: skip
        config = self.root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "resourceconfig.json").write_text(json.dumps(resources))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (config / "hyperparameters.json").write_text(json.dumps(self.job["HyperParameters"]))
        for folder in ("model", "output", "checkpoints"):
            (self.root / folder).mkdir(exist_ok=True)

    def start(self) -> subprocess.Popen:
        """`ContainerEntrypoint + ContainerArguments` of the job, with the job's environment."""
        algorithm = self.job["AlgorithmSpecification"]
        command = [*algorithm["ContainerEntrypoint"], *map(self.relocate, algorithm["ContainerArguments"])]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "TRAINING_JOB_NAME": self.job["TrainingJobName"],
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "OMP_NUM_THREADS": "1",  # a shared 2-core test machine: no spinning thread pools
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HTTP_PROXY": "http://127.0.0.1:9",  # a job in a test reaches nothing outside this machine
            "HTTPS_PROXY": "http://127.0.0.1:9",
            **self.environment,
        }
        return subprocess.Popen(command, env=env, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip


def download_prefix(uri: str, folder: Path) -> None:
    bucket, _, prefix = uri[5:].partition("/")
    s3 = s3_client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            target = folder / item["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))


def submit(data: Path, tiny_bert: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    """`train --remote --no-wait` against moto: (the job as SageMaker recorded it, the request the SDK sent)."""
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    args = ["train", "--remote", "--no-wait", "--json", "--role", ROLE, "--bucket", bucket, "--data", str(data),
            "--instance-type", "ml.m5.xlarge", "--text-model", str(tiny_bert), "--video-weights", "none",
            "--modalities", "text", "--batch-size", "8", "--workers", "0", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    submitted = json.loads(result.stdout)
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=submitted["job_name"])
    assert job["HyperParameters"] == submitted["request"]["HyperParameters"]
    # moto keeps no Environment; the request the SDK sent has it.
    job["AlgorithmSpecification"] = submitted["request"]["AlgorithmSpecification"]
    return job, submitted["request"]


def read_until(process: subprocess.Popen, needle: str) -> str:
    seen = []
    for line in process.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if needle in line:
            return "".join(seen)
    return "".join(seen)


@pytest.mark.slow
def test_sdk_driver_runs_the_job_to_a_model_and_a_sigterm_resumes(
    tmp_path: Path,
    aws_env: str,  # noqa: F811
    sample_data: Path,
    tiny_bert: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job, request = submit(copy_prepared(sample_data, tmp_path / "data"), tiny_bert, aws_env, monkeypatch)
    container = Container(tmp_path / "ml", job, request["Environment"])
    container.provision()

    # A stop or a spot interruption: SageMaker sends SIGTERM to the container's first process.
    process = container.start()
    try:
        seen = read_until(process, "[meldctl] epoch=1 ")
        assert "[meldctl] epoch=1 " in seen, seen
        process.send_signal(signal.SIGTERM)
        seen += process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 143, seen
    assert "Stopped by SIGTERM" in seen
    checkpoints = tmp_path / "ml" / "checkpoints"
    assert 2 <= read_checkpoint(checkpoints / "last.pt")["training"]["state"]["epoch"] < EPOCHS
    assert not (tmp_path / "ml" / "model" / "best.pt").exists()

    # SageMaker restores /opt/ml/checkpoints into the restarted container, which runs the same job.
    done = container.start()
    output = done.communicate(timeout=300)[0]
    assert done.returncode == 0, output
    assert f"resuming from {checkpoints / 'last.pt'}" in output
    assert f"[meldctl] epoch={EPOCHS} " in output and "[meldctl] epoch=1 " not in output
    assert "[meldctl] best epoch=" in output and "[meldctl] test emotion_weighted_f1=" in output

    model = tmp_path / "ml" / "model"  # SageMaker packs this folder into model.tar.gz
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(model, arcname=".")
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        names = {name.removeprefix("./") for name in tar.getnames()}
    expected = {"best.pt", "settings.toml", "eval/test/report.json", "eval/test/confusion_emotion.png",
                "eval/test/confusion_sentiment.png"}  # fmt: skip
    assert expected <= names
    assert json.loads((model / "eval" / "test" / "report.json").read_text())["split"] == "test"
    load_checkpoint(model / "best.pt")
    assert not (tmp_path / "ml" / "output" / "failure").exists()
