from __future__ import annotations

import re
from pathlib import Path

import pytest

from meldctl.errors import ConfigError, RemoteError
from meldctl.remote.sagemaker import (
    build_job_spec,
    default_image,
    gpus_per_instance,
    metric_definitions,
    settings_hyperparameters,
    stage_source,
)
from meldctl.settings import load_settings

ROLE = "arn:aws:iam::123456789012:role/meldctl"
EPOCH_LINE = (
    "[meldctl] epoch=3 train_loss=0.9123 dev_loss=0.8812 dev_emotion_accuracy=0.5012 dev_emotion_weighted_f1=0.4876 "
    "dev_sentiment_accuracy=0.6100 dev_sentiment_weighted_f1=0.6050  (best)"
)


def remote(**values: object) -> dict[str, object]:
    return {"remote": {"role": ROLE, "bucket": "meld-bucket", "data": "s3://meld-bucket/data/", **values}}


def spec_for(**values: object):  # noqa: ANN201
    return build_job_spec(load_settings(None, remote(**values)), region="eu-west-1", base_name="meldctl-abc123")


def test_defaults_give_one_g5_xlarge_with_the_pytorch_image() -> None:
    request = spec_for().request("meldctl-abc123-20250101000000")
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert request["ResourceConfig"]["InstanceCount"] == 1
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch:2.11-cu130-amzn2023-sagemaker"
    )
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert request["EnableManagedSpotTraining"] is False
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels["data"] == "s3://meld-bucket/data/"
    assert channels["code"].startswith("s3://meld-bucket/meldctl/meldctl-abc123/meldctl-abc123-2025")
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://meld-bucket/meldctl/meldctl-abc123/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"
    assert request["Environment"]["MELDCTL_REMOTE__CHECKPOINT_DIR"] == "/opt/ml/checkpoints"


def test_image_follows_region_and_processor() -> None:
    assert default_image("af-south-1", "ml.g5.xlarge").startswith("626614931356.dkr.ecr.af-south-1.amazonaws.com/")
    assert default_image("us-east-1", "ml.m5.xlarge").endswith("pytorch:2.11-cpu-amzn2023-sagemaker")
    assert default_image("cn-north-1", "ml.g5.xlarge").startswith("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/")
    with pytest.raises(RemoteError):
        default_image("xx-nowhere-1", "ml.g5.xlarge")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-northeast-3", "me-central-1"])
def test_image_agrees_with_the_sagemaker_sdk(region: str) -> None:
    from sagemaker.core import image_uris

    for instance_type in ("ml.g5.xlarge", "ml.m5.xlarge"):
        expected = image_uris.retrieve(
            "pytorch-amzn2023", region=region, version="2.11", instance_type=instance_type, image_scope="training"
        )
        assert default_image(region, instance_type) == expected


def test_spot_waits_twice_max_run_by_default_and_checks_max_wait() -> None:
    request = spec_for(spot=True, max_run=3600).request()
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert (
        spec_for(spot=True, max_run=3600, max_wait=5000).request()["StoppingCondition"]["MaxWaitTimeInSeconds"] == 5000
    )
    with pytest.raises(ConfigError, match="shorter"):
        spec_for(spot=True, max_run=3600, max_wait=100)
    with pytest.raises(ConfigError, match="spot"):
        spec_for(max_wait=100)


@pytest.mark.parametrize(("missing", "says"), [("role", "--role"), ("bucket", "--bucket")])
def test_missing_role_or_bucket_says_what_to_pass(missing: str, says: str) -> None:
    with pytest.raises(RemoteError) as caught:
        spec_for(**{missing: None})
    assert says in (caught.value.hint or "")


def test_unknown_instance_type_suggests_close_ones() -> None:
    with pytest.raises(RemoteError) as caught:
        spec_for(instance_type="ml.g5.xlarg")
    assert "ml.g5.xlarge" in (caught.value.hint or "")


def test_several_gpus_or_instances_run_under_torchrun() -> None:
    assert not spec_for().distributed
    assert spec_for(instance_count=2).distributed
    assert spec_for(instance_type="ml.g5.12xlarge").distributed
    assert gpus_per_instance("ml.m5.xlarge") == 0 and gpus_per_instance("ml.p4d.24xlarge") == 8


def test_local_data_and_weights_become_uploads(tmp_path: Path) -> None:
    data = tmp_path / "prepared"
    (data / "manifest").mkdir(parents=True)
    text = tmp_path / "bert"
    text.mkdir()
    settings = load_settings(
        None,
        {**remote(data=str(data)), "model": {"text_model": str(text), "modalities": "text,audio"}},
    )
    spec = build_job_spec(settings, region="us-east-1", base_name="meldctl-abc123")
    uploads = {u.channel: u for u in spec.uploads}
    assert uploads["data"].local == data
    assert set(uploads["data"].exclude) == {"raw", "clips"}  # no video: the clips stay home
    assert spec.channels["data"] == uploads["data"].uri and uploads["data"].uri.startswith(
        "s3://meld-bucket/meldctl/data/"
    )
    assert spec.channels["text_model"] == uploads["text_model"].uri
    assert "model.text_model" not in spec.hyperparameters  # the channel replaces it inside the job
    assert spec.problems() == []
    assert build_job_spec(load_settings(None, remote(data=str(tmp_path))), region="us-east-1").problems()


def test_hyperparameters_are_the_resolved_settings_without_local_paths() -> None:
    settings = load_settings(None, {"train": {"batch_size": 16, "run_dir": "/home/me/run"}})
    hps = settings_hyperparameters(settings)
    assert hps["train.batch_size"] == "16"
    assert hps["model.modalities"] == "text,audio,video"
    assert hps["model.freeze_text"] == "true"
    assert not any(key in hps for key in ("train.run_dir", "data.data_dir", "train.checkpoint_dir"))
    assert all(isinstance(v, str) for v in hps.values())


def test_metric_regexes_read_the_training_log_lines() -> None:
    found = {}
    for metric in metric_definitions():
        match = re.search(metric["Regex"], EPOCH_LINE)
        if match:
            found[metric["Name"]] = float(match.group(1))
    assert found["epoch"] == 3 and found["train_loss"] == 0.9123 and found["dev_loss"] == 0.8812
    assert found["dev_emotion_weighted_f1"] == 0.4876 and found["dev_sentiment_weighted_f1"] == 0.605
    assert "best_dev_emotion_weighted_f1" not in found
    best = next(m for m in metric_definitions() if m["Name"] == "best_dev_emotion_weighted_f1")
    assert float(re.search(best["Regex"], "[meldctl] best epoch=3 dev_emotion_weighted_f1=0.5100").group(1)) == 0.51


def test_source_code_is_this_meldctl_with_its_pins(tmp_path: Path) -> None:
    folder = stage_source(tmp_path / "code", ["torch==2.11.0", "typer>=0.12"])
    assert (folder / "meldctl" / "__init__.py").is_file()
    assert (folder / "meldctl" / "training" / "sagemaker_env.py").is_file()
    assert not list(folder.rglob("__pycache__"))
    assert "run_in_job" in (folder / "meldctl_job.py").read_text()
    assert "torch==2.11.0" in (folder / "requirements.txt").read_text().splitlines()
