from __future__ import annotations

import re
from pathlib import Path

import pytest

from meldctl.errors import ConfigError, RemoteError
from meldctl.remote.checks import check_role
from meldctl.remote.images import default_image, gpus_per_instance
from meldctl.remote.jobspec import SINGLE_COMMAND, TORCHRUN_COMMAND, build_job_spec, metric_definitions
from meldctl.remote.submit import stage_source
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


def test_every_s3_location_derives_from_bucket_and_prefix() -> None:
    spec = spec_for(prefix="team/meld")
    assert spec.root_uri == "s3://meld-bucket/team/meld/meldctl-abc123"
    for folder in ("output", "checkpoints", "tensorboard"):
        assert spec.uri(folder) == f"s3://meld-bucket/team/meld/meldctl-abc123/{folder}"
    assert spec.channels == {"data": "s3://meld-bucket/data/"}
    assert spec.environment["MELDCTL_REMOTE__CHECKPOINT_DIR"] == "/opt/ml/checkpoints"


@pytest.mark.parametrize("region", ["us-east-1", "ap-northeast-3"])
def test_the_default_image_is_the_sdks_pytorch_image(region: str) -> None:
    from sagemaker.core import image_uris

    for instance_type in ("ml.g5.xlarge", "ml.m5.xlarge"):
        expected = image_uris.retrieve(
            "pytorch-amzn2023", region=region, version="2.11", instance_type=instance_type, image_scope="training"
        )
        assert default_image(region, instance_type) == expected
    assert default_image("us-east-1", "ml.m5.xlarge").endswith("pytorch:2.11-cpu-amzn2023-sagemaker")


def test_a_region_without_the_image_says_to_pass_one() -> None:
    with pytest.raises(RemoteError) as caught:
        default_image("xx-nowhere-1", "ml.g5.xlarge")
    assert "--image" in (caught.value.hint or "")


def test_spot_waits_twice_max_run_by_default_and_checks_max_wait() -> None:
    assert spec_for(spot=True, max_run=3600).max_wait == 7200
    assert spec_for(spot=True, max_run=3600, max_wait=5000).max_wait == 5000
    assert spec_for().max_wait is None
    with pytest.raises(ConfigError, match="shorter"):
        spec_for(spot=True, max_run=3600, max_wait=100)
    with pytest.raises(ConfigError, match="spot"):
        spec_for(max_wait=100)


@pytest.mark.parametrize(("missing", "says"), [("role", "--role"), ("bucket", "--bucket")])
def test_missing_role_or_bucket_says_what_to_pass(missing: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_for(**{missing: None})
    assert says in (caught.value.hint or "")


def test_unknown_instance_type_suggests_close_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        spec_for(instance_type="ml.g5.xlarg")
    assert "ml.g5.xlarge" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "role",
    [
        "arn:aws:iam::12345:role/x",  # a 5-digit account
        "arn:aws:iam::123456789012:role/my role",  # a space in the name
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:user/x",
        "arn:aws:iam::1234567890123:role/x",
    ],
)
def test_a_malformed_role_is_refused(role: str) -> None:
    with pytest.raises(ConfigError, match="is not an IAM role ARN"):
        spec_for(role=role)


def test_role_paths_and_partitions_are_accepted() -> None:
    assert spec_for(role="arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-Role+x=1,a.b@c_d").role
    assert check_role("arn:aws-cn:iam::123456789012:role/x") == "arn:aws-cn:iam::123456789012:role/x"


def test_an_image_of_another_region_is_refused() -> None:
    with pytest.raises(ConfigError, match="is in us-east-1, SageMaker would run in eu-west-1") as caught:
        spec_for(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/meldctl:0.1.0")
    assert "--region us-east-1" in (caught.value.hint or "")
    assert spec_for(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/meldctl:0.1.0").image.endswith("0.1.0")


def test_one_process_runs_itself_several_run_under_torchrun() -> None:
    single = spec_for()
    assert not single.distributed and single.command == SINGLE_COMMAND
    assert single.command.startswith("exec ")  # meldctl replaces the shell: SIGTERM reaches it
    for spec in (spec_for(instance_count=2), spec_for(instance_type="ml.g5.12xlarge")):
        assert spec.distributed and spec.command == TORCHRUN_COMMAND
    assert "exec ${SM_PYTHON_CMD:-python3} -m meldctl.training.torchrun --nnodes" in TORCHRUN_COMMAND
    assert TORCHRUN_COMMAND.endswith("-m meldctl train")
    assert (
        gpus_per_instance("us-east-1", "ml.p4d.24xlarge") == 8 and gpus_per_instance("us-east-1", "ml.m5.xlarge") == 1
    )


def test_network_isolation_needs_an_own_image_and_installs_nothing() -> None:
    with pytest.raises(ConfigError, match="--image"):
        spec_for(network_isolation=True)
    spec = spec_for(network_isolation=True, image="123.dkr.ecr.eu-west-1.amazonaws.com/meldctl-train:0.1.0")
    assert spec.requirements is None  # no PyPI in an isolated job: the image holds everything
    assert spec.environment["HF_HUB_OFFLINE"] == "1"
    assert "torch==2.11.0" in (spec_for().requirements or [])


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
    assert spec.channels["data"] == uploads["data"].uri
    assert uploads["data"].uri.startswith("s3://meld-bucket/meldctl/data/prepared-")
    assert spec.channels["text_model"] == uploads["text_model"].uri
    assert uploads["text_model"].uri.startswith("s3://meld-bucket/meldctl/weights/bert-")
    assert "model__text_model" not in spec.hyperparameters  # the channel replaces it inside the job
    assert spec.problems() == []
    assert build_job_spec(load_settings(None, remote(data=str(tmp_path))), region="us-east-1").problems()


def test_metric_regexes_read_the_job_log_lines() -> None:
    found = {}
    lines = [
        EPOCH_LINE,
        "[meldctl] best epoch=3 dev_emotion_weighted_f1=0.5100",
        "[meldctl] test emotion_weighted_f1=0.4321 emotion_accuracy=0.5000 sentiment_weighted_f1=0.6000",
    ]
    for metric in metric_definitions():
        for line in lines:
            match = re.search(metric["Regex"], line)
            if match:
                found.setdefault(metric["Name"], float(match.group(1)))
    assert found["epoch"] == 3 and found["train_loss"] == 0.9123 and found["dev_loss"] == 0.8812
    assert found["dev_emotion_weighted_f1"] == 0.4876 and found["dev_sentiment_weighted_f1"] == 0.605
    assert found["best_dev_emotion_weighted_f1"] == 0.51
    assert found["test_emotion_weighted_f1"] == 0.4321 and found["test_sentiment_weighted_f1"] == 0.6


def test_source_code_is_this_meldctl_with_its_pins(tmp_path: Path) -> None:
    folder = stage_source(tmp_path / "code", ["torch==2.11.0", "typer>=0.12"])
    assert (folder / "meldctl" / "__init__.py").is_file()
    assert (folder / "meldctl" / "training" / "sagemaker_env.py").is_file()
    assert not list(folder.rglob("__pycache__")) and not (folder / "meldctl" / "data" / "sample").exists()
    assert "torch==2.11.0" in (folder / "requirements.txt").read_text().splitlines()
    assert not (stage_source(tmp_path / "isolated", None) / "requirements.txt").exists()
