"""`meldctl analyze s3://... --remote`: the Processing job it creates in moto, run here as SageMaker runs one.

SageMaker's side of the contract, done by hand for each instance of the job: every input downloaded under its
LocalPath (a ShardedByS3Key input split across the instances by S3 key, a FullyReplicated one copied to each; a
manifest input holds the objects it lists, at their paths below its prefix), `/opt/ml/config/resourceconfig.json`
and `processingjobconfig.json` written, the job's ContainerEntrypoint + ContainerArguments run with its
Environment, then the output's LocalPath uploaded to its S3Uri. A scratch folder stands in for /opt/ml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from aws_servers import (  # noqa: F401
    ROLE,
    aws_env,
    create_training_job,
    moto_server,
    no_credentials,
    s3_client,
    s3_server,
)
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()
ML = "/opt/ml"


def _parse(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _objects(uri: str) -> list[str]:
    bucket, prefix = _parse(uri)
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


class Instance:
    """One instance of a Processing job, with `root` in place of /opt/ml."""

    def __init__(self, root: Path, job: dict, request: dict, host: int) -> None:
        self.root, self.job, self.request = root, job, request
        self.count = request["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
        self.host = host

    def relocate(self, text: str) -> str:
        return text.replace(ML, str(self.root))

    def provision(self) -> None:
        """Inputs under their LocalPath (this host's shard of a sharded one), then the config files."""
        for item in self.job["ProcessingInputs"]:
            s3 = item["S3Input"]
            objects = self._objects(s3)
            if s3["S3DataDistributionType"] == "ShardedByS3Key":
                objects = objects[self.host :: self.count]
            for key, relative in objects:
                target = Path(self.relocate(s3["LocalPath"])) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                s3_client().download_file(_parse(s3["S3Uri"])[0], key, str(target))
        config = self.root / "config"
        config.mkdir(parents=True)
        hosts = [f"algo-{n + 1}" for n in range(self.count)]
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[self.host], "hosts": hosts}))
        (config / "processingjobconfig.json").write_text(json.dumps({**self.request, **self.job}, default=str))

    def _objects(self, s3: dict) -> list[tuple[str, str]]:
        """(key, path below LocalPath), sorted by key."""
        bucket, prefix = _parse(s3["S3Uri"])
        if s3["S3DataType"] == "ManifestFile":
            body = s3_client().get_object(Bucket=bucket, Key=prefix)["Body"].read()
            head, *relatives = json.loads(body)
            base_bucket, base = _parse(head["prefix"])
            assert base_bucket == bucket
            return sorted((base + relative, relative) for relative in relatives)
        keys = _objects(s3["S3Uri"])
        return [(key, key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]) for key in keys]

    def run(self) -> subprocess.CompletedProcess:
        app_spec = self.job["AppSpecification"]
        command = [*app_spec["ContainerEntrypoint"], *map(self.relocate, app_spec["ContainerArguments"])]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "SM_ML_ROOT": str(self.root),  # meldctl's stand-in for /opt/ml (its config files)
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "OMP_NUM_THREADS": "1",
            "HTTP_PROXY": "http://127.0.0.1:9",  # a job in a test reaches nothing outside this machine
            "HTTPS_PROXY": "http://127.0.0.1:9",
            **{key: self.relocate(value) for key, value in self.request["Environment"].items()},
        }
        return subprocess.run(command, env=env, cwd=self.root, capture_output=True, text=True, timeout=600)

    def upload_outputs(self) -> None:
        for output in self.job["ProcessingOutputConfig"]["Outputs"]:
            local = Path(self.relocate(output["S3Output"]["LocalPath"]))
            bucket, prefix = _parse(output["S3Output"]["S3Uri"])
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                s3_client().upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


@pytest.fixture
def episodes(tmp_path: Path) -> dict[str, Path]:
    """Five short episodes, four with subtitles beside them (one in a subfolder, one tagged `.en.srt`), and a
    file named like a video that is not one."""
    from episode import SENTENCES, write_episode, write_srt

    folder = tmp_path / "episodes"
    (folder / "season2").mkdir(parents=True)
    first = write_episode(folder / "s1e1.mp4", SENTENCES[:2])
    files = {"s1e1.mp4": first.video, "s1e1.srt": write_srt(folder / "s1e1.srt", first.cues)}
    for name in ("s1e2", "s1e3", "season2/s2e1"):
        (folder / f"{name}.mp4").symlink_to(first.video)
        files[f"{name}.mp4"] = folder / f"{name}.mp4"
        srt = folder / (f"{name}.en.srt" if name == "s1e3" else f"{name}.srt")
        files[srt.relative_to(folder).as_posix()] = write_srt(srt, first.cues)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    files["broken.mp4"] = folder / "broken.mp4"
    return files


def _upload(files: dict[str, Path], bucket: str) -> str:
    for relative, path in files.items():
        s3_client().upload_file(str(path), bucket, f"shows/{relative}")
    s3_client().put_object(Bucket=bucket, Key="shows/notes.txt", Body=b"not a video")
    return f"s3://{bucket}/shows/"


@pytest.mark.slow
def test_the_job_runs_each_video_once_on_its_instance_and_a_rerun_does_the_rest(
    tmp_path: Path,
    aws_env: str,  # noqa: F811
    episodes: dict[str, Path],
    trained_run: Path,
) -> None:
    source, out = _upload(episodes, aws_env), f"s3://{aws_env}/timelines/"
    args = ["analyze", source, "--remote", "--out", out, "--role", ROLE, "--instance-type", "ml.m5.xlarge",
            "--instance-count", "2", "--ckpt", str(trained_run / "best.pt"), "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, [*args, "--no-wait", "--json"])
    assert result.exit_code == 0, result.output
    submitted = json.loads(result.stdout)
    videos = ["broken.mp4", "s1e1.mp4", "s1e2.mp4", "s1e3.mp4", "season2/s2e1.mp4"]
    assert submitted["videos"] == videos
    assert submitted["subtitles"] == ["s1e1.srt", "s1e2.srt", "s1e3.en.srt", "season2/s2e1.srt"]
    request = submitted["request"]
    job = boto3.client("sagemaker").describe_processing_job(ProcessingJobName=submitted["job_name"])
    assert job["ProcessingInputs"] == request["ProcessingInputs"]  # moto keeps no Environment or resources

    for host in range(2):
        instance = Instance(tmp_path / f"algo-{host + 1}" / "ml", job, request, host)
        instance.provision()
        shard = sorted(p.name for p in (instance.root / "processing/input/videos").rglob("*.mp4"))
        assert len(shard) in (2, 3)  # five videos over two instances
        assert len(list((instance.root / "processing/input/subtitles").rglob("*.srt"))) == 4  # every one, each
        done = instance.run()
        assert done.returncode == 0, done.stdout + done.stderr
        instance.upload_outputs()

    keys = _objects(out)
    stems = ["s1e1", "s1e2", "s1e3", "season2/s2e1"]
    for stem in stems:
        assert [k for k in keys if k.startswith(f"timelines/{stem}/")] == [
            f"timelines/{stem}/timeline.{ext}" for ext in ("csv", "json", "png", "srt")
        ]
        timeline = json.loads(s3_client().get_object(Bucket=aws_env, Key=f"timelines/{stem}/timeline.json")["Body"]
                              .read())  # fmt: skip
        assert timeline["segmentation"]["method"] == "subtitles" and len(timeline["utterances"]) == 2
    assert not [k for k in keys if k.startswith("timelines/broken/")]
    reports = [k for k in keys if k.startswith(f"timelines/_meldctl/{submitted['job_name']}/")]
    assert sorted(k.rsplit("/", 1)[1] for k in reports) == ["algo-1.jsonl", "algo-2.jsonl"]
    bodies = [s3_client().get_object(Bucket=aws_env, Key=k)["Body"].read().decode() for k in reports]
    lines = [json.loads(line) for body in bodies for line in body.splitlines()]
    assert sorted(line["video"] for line in lines) == videos  # every video on exactly one instance
    broken = [line for line in lines if line["status"] == "failed"]
    assert [line["video"] for line in broken] == ["broken.mp4"] and "broken.mp4" in broken[0]["error"]

    # Run again: only the video without a timeline is left, in a job of its own (moto completes it at once).
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["already_done"] == videos[1:] and summary["status"] == "Completed"
    assert [(v["video"], v["status"]) for v in summary["videos"]] == [("broken.mp4", "missing")]
    assert "Completed 0/1 videos done" in again.output
    manifest = boto3.client("sagemaker").describe_processing_job(ProcessingJobName=summary["job_name"])
    videos_input = manifest["ProcessingInputs"][0]["S3Input"]
    body = s3_client().get_object(Bucket=aws_env, Key=_parse(videos_input["S3Uri"])[1])["Body"].read()
    assert json.loads(body)[1:] == ["broken.mp4"]


def test_dry_run_prints_the_request_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_run: Path
) -> None:
    no_credentials(monkeypatch, tmp_path)
    args = ["analyze", "s3://videos/shows/", "--remote", "--dry-run", "--out", "s3://results/timelines/",
            "--role", ROLE, "--region", "eu-west-1", "--ckpt", str(trained_run / "best.pt"),
            "--instance-count", "3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    request = json.loads(result.stdout)
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 3, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30,
    }  # fmt: skip
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["videos"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["videos"]["S3DataType"] == "ManifestFile"
    assert inputs["subtitles"]["S3DataDistributionType"] == "FullyReplicated"
    assert inputs["model"]["S3Uri"].startswith("s3://results/meldctl/analyze/models/")  # no --bucket: --out's
    assert (
        "pytorch" in request["AppSpecification"]["ImageUri"] and "eu-west-1" in request["AppSpecification"]["ImageUri"]
    )
    assert request["AppSpecification"]["ContainerEntrypoint"] == ["/bin/bash", "-c"]
    assert "pip install" in request["AppSpecification"]["ContainerArguments"][0]
    out = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    assert out["S3Uri"] == "s3://results/timelines" and out["S3UploadMode"] == "Continuous"

    own = runner.invoke(app, [*args, "--image", "123.dkr.ecr.eu-west-1.amazonaws.com/meldctl:1", "--json"])
    assert own.exit_code == 0, own.output
    app_spec = json.loads(own.stdout)["request"]["AppSpecification"]
    assert app_spec["ContainerEntrypoint"] == ["meldctl"] and app_spec["ContainerArguments"][0] == "analyze"
    assert "code" not in {i["InputName"] for i in json.loads(own.stdout)["request"]["ProcessingInputs"]}
    # Dialogue context goes through to each instance's `meldctl analyze`.
    for flag in ("--causal", "--no-context"):
        plan = runner.invoke(app, [*args, "--image", "123.dkr.ecr.eu-west-1.amazonaws.com/meldctl:1", flag])
        assert plan.exit_code == 0, plan.output
        assert json.loads(plan.stdout)["AppSpecification"]["ContainerArguments"][-1] == flag


def test_checks_of_train_remote_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_run: Path) -> None:
    no_credentials(monkeypatch, tmp_path)
    base = ["analyze", "s3://videos/shows/", "--remote", "--dry-run", "--out", "s3://results/t/", "--region",
            "us-east-1", "--ckpt", str(trained_run / "best.pt")]  # fmt: skip
    for extra, says in (
        ([], "no IAM role for the processing job"),
        (["--role", "admin"], "is not an IAM role ARN"),
        (["--role", ROLE, "--instance-type", "ml.g5.xlarj"], "unknown SageMaker processing instance type"),
    ):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert says in result.output, result.output
    local = runner.invoke(app, ["analyze", str(tmp_path), "--remote", "--out", "s3://results/t/", "--role", ROLE])
    assert local.exit_code == 2 and "upload them first" in local.output


def test_a_training_jobs_model_and_what_aws_refuses(aws_env: str, tmp_path: Path) -> None:  # noqa: F811
    s3_client().put_object(Bucket=aws_env, Key="shows/ep1.mp4", Body=b"a video, as far as S3 knows")
    create_training_job(aws_env, "meldctl-abc123-20261206")
    base = ["analyze", f"s3://{aws_env}/shows/", "--remote", "--role", ROLE, "--instance-type", "ml.m5.xlarge"]

    result = runner.invoke(app, [*base, "--out", f"s3://{aws_env}/t/", "--ckpt", "meldctl-abc123-20261206",
                                 "--no-wait", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    inputs = {i["InputName"]: i["S3Input"] for i in json.loads(result.stdout)["request"]["ProcessingInputs"]}
    model = boto3.client("sagemaker").describe_training_job(TrainingJobName="meldctl-abc123-20261206")
    assert inputs["model"]["S3Uri"] == model["ModelArtifacts"]["S3ModelArtifacts"]
    assert "subtitles" not in inputs  # ep1 has none: no empty manifest

    for args, says in (
        (["--out", "s3://no-such-bucket-meldctl/t/", "--ckpt", "meldctl-abc123-20261206"], "no-such-bucket-meldctl"),
        (["--out", f"s3://{aws_env}/t/", "--ckpt", "no-such-job"], "no-such-job"),
    ):
        refused = runner.invoke(app, [*base, *args, "--no-wait"])
        assert refused.exit_code == 1 and "Traceback" not in refused.output, refused.output
        errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and says in errors[0], refused.output
    empty = runner.invoke(app, ["analyze", f"s3://{aws_env}/nothing/", *base[2:], "--out", f"s3://{aws_env}/t/",
                                "--ckpt", "meldctl-abc123-20261206"])  # fmt: skip
    assert empty.exit_code == 1 and "no video under" in empty.output
