"""SageMaker endpoints: the deploy plan (pure), packaging, and every call against moto's SageMaker server."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from aws_servers import ROLE, aws_env, create_training_job, model_archive, moto_server, s3_client, s3_server  # noqa: F401
from botocore.exceptions import ClientError

from meldctl import protocol
from meldctl.errors import ConfigError, RemoteError
from meldctl.remote import endpoint_invoke
from meldctl.remote import endpoint_lifecycle as lifecycle
from meldctl.remote import endpoint_spec as spec_
from meldctl.remote.aws import explain_client_error, session
from meldctl.serving.uploads import Limits, read_multipart

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/meldctl:0.1.0"
ANSWER = {"clip": "dia3_utt5.mp4", "text": "Hi", "emotion": {"neutral": 0.6, "joy": 0.4},
          "sentiment": {"neutral": 0.7, "positive": 0.3}, "top_emotion": "neutral", "top_sentiment": "neutral",
          "top_emotions": [["neutral", 0.6], ["joy", 0.4]]}  # fmt: skip


def plan(source: str | Path, **options: Any) -> spec_.EndpointSpec:
    # moto's list of endpoint instance types predates the g5 family: the moto tests use ml.g4dn.xlarge.
    values = {"endpoint": "meld-e1", "region": "us-east-1", "role": ROLE, "image": IMAGE, "bucket": "b",
              "prefix": "meldctl", "instance_type": "ml.g4dn.xlarge", **options}  # fmt: skip
    return spec_.build_spec(str(source), **values)


def test_a_local_checkpoint_plan(tmp_path: Path) -> None:
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    spec = plan(checkpoint)
    digest = spec_.file_digest(checkpoint)[:16]
    assert spec.upload == spec_.ModelUpload(checkpoint, f"s3://b/meldctl/endpoints/models/{digest}/model.tar.gz")
    model = spec.model_request()
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["ModelDataUrl"] == spec.upload.uri
    assert model["ModelName"] == spec.config_name and model["ModelName"].startswith("meld-e1-")
    variant = spec.config_request()["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    assert variant["ModelName"] == model["ModelName"]
    assert spec.endpoint_request() == {"EndpointName": "meld-e1", "EndpointConfigName": spec.config_name,
                                       "Tags": spec_.tags("meld-e1")}  # fmt: skip
    assert spec.problems() == []


def test_serverless_async_and_job_plans(tmp_path: Path) -> None:
    serverless = plan("meldctl-abc-20250101", serverless_memory_mb=4096).config_request()
    assert serverless["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 5}
    assert "InstanceType" not in serverless["ProductionVariants"][0]
    asynchronous = plan("meldctl-abc-20250101", use_async=True).config_request()["AsyncInferenceConfig"]
    assert asynchronous["OutputConfig"]["S3OutputPath"] == "s3://b/meldctl/endpoints/meld-e1/async"
    job = plan("meldctl-abc-20250101", image=None, role=None)
    assert job.training_job == "meldctl-abc-20250101" and job.upload is None and len(job.problems()) == 2
    assert "training job meldctl-abc-20250101" in json.dumps(job.describe())
    long = plan("x", endpoint="e" * 63)
    assert len(long.model_name) <= 63


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("job", {"endpoint": "bad_name"}, "not a SageMaker endpoint name"),
        ("job", {"endpoint": "-x"}, "not a SageMaker endpoint name"),
        ("job", {"serverless_memory_mb": 3000}, "not a serverless size"),
        ("job", {"instance_type": "ml.g5.xlarg"}, "unknown SageMaker endpoint instance type 'ml.g5.xlarg'"),
        ("job", {"serverless_memory_mb": 2048, "use_async": True}, "not both"),
        ("job", {"use_async": True, "bucket": None}, "--async needs --output"),
        ("missing/best.pt", {}, "no checkpoint file missing/best.pt"),
        ("best.pt", {}, "no checkpoint file best.pt"),
    ],
)
def test_plan_refusals(source: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(source, **options)


def test_a_local_checkpoint_needs_a_bucket(tmp_path: Path) -> None:
    (tmp_path / "best.pt").write_bytes(b"w")
    with pytest.raises(ConfigError, match="--bucket"):
        plan(tmp_path / "best.pt", bucket=None)


def test_packaging_is_reproducible(tmp_path: Path) -> None:
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights" * 1000)
    first = spec_.package_checkpoint(checkpoint, tmp_path / "a" / "model.tar.gz").read_bytes()
    checkpoint.touch()  # a new mtime must not change the archive
    second = spec_.package_checkpoint(checkpoint, tmp_path / "b" / "model.tar.gz").read_bytes()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["best.pt"]
        assert tar.extractfile("best.pt").read() == checkpoint.read_bytes()


def test_the_invocation_body_is_a_multipart_form(tmp_path: Path) -> None:
    clip = tmp_path / 'a "quoted".mp4'
    clip.write_bytes(b"\x00video\r\n--")
    kind, body = protocol.clip_form(clip, "Oh my God! ☕")
    boundary = kind.split("boundary=")[1].encode()
    assert body.startswith(b"--" + boundary) and body.endswith(b"--" + boundary + b"--\r\n")
    assert "Oh my God! ☕".encode() in body and b"\x00video\r\n--" in body
    assert b'filename="a \\"quoted\\".mp4"' in body


# --- against moto's SageMaker (and SeaweedFS S3) ---------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    path.write_bytes(b"not loaded by these tests" * 100)
    return path


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


def test_deploy_invoke_list_delete(aws_env: str, checkpoint: Path, moto_server, tmp_path: Path) -> None:  # noqa: ANN001, F811
    boto, statuses = session(), []
    spec = plan(checkpoint, bucket=aws_env)
    done = lifecycle.deploy(boto, spec, poll_s=0, on_status=lambda status, elapsed: statuses.append(status))
    assert done == lifecycle.Deployed(
        "meld-e1", "InService", False, spec.model_name, spec.config_name, spec.upload.uri, []
    )
    assert statuses == ["InService"]
    archive = s3_client().get_object(Bucket=aws_env, Key=spec.upload.uri.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.extractfile("best.pt").read() == checkpoint.read_bytes()
    client = boto3.client("sagemaker")
    model = client.describe_model(ModelName=spec.model_name)
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["PrimaryContainer"]["ModelDataUrl"] == spec.upload.uri
    assert client.describe_endpoint(EndpointName="meld-e1")["EndpointConfigName"] == spec.config_name

    [info] = lifecycle.list_endpoints(client)
    assert (info.name, info.status, info.kind) == ("meld-e1", "InService", "1 x ml.g4dn.xlarge")
    assert info.config == spec.config_name

    results = {"results": [{"Body": json.dumps(ANSWER), "ContentType": "application/json"}]}
    request = urllib.request.Request(f"{moto_server.url}/moto-api/static/sagemaker/endpoint-results",
                                     data=json.dumps(results).encode(), method="POST")  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()
    clip = checkpoint.parent / "dia3_utt5.mp4"
    clip.write_bytes(b"video")
    assert endpoint_invoke.invoke(boto, "meld-e1", clip, "Hi", bucket=None, prefix="meldctl") == ANSWER
    sent: list[tuple[str, bytes]] = []  # the request as it leaves botocore, read back by the server's own reader
    boto.events.register(
        "before-send.sagemaker-runtime.InvokeEndpoint",
        lambda request, **_: sent.append((request.headers["Content-Type"], request.body)),
    )
    context = [("Rachel", "I got the job!"), (None, "Really?")]
    endpoint_invoke.invoke(boto, "meld-e1", clip, "Okay.", bucket=None, prefix="meldctl", context=context)
    [(kind, body)] = sent
    kind = kind.decode() if isinstance(kind, bytes) else kind
    read = asyncio.run(read_multipart(_chunks(body), kind.split("boundary=")[1], tmp_path, Limits(clip_bytes=2**20)))
    assert (read.text, read.context, read.no_context, read.name) == ("Okay.", context, False, "dia3_utt5.mp4")

    removed = lifecycle.delete_endpoint(client, "meld-e1")
    assert removed == ["endpoint meld-e1", f"endpoint config {spec.config_name}", f"model {spec.model_name}"]
    assert lifecycle.find_endpoint(client, "meld-e1") is None and lifecycle.list_endpoints(client) == []
    with pytest.raises(ClientError):
        client.describe_model(ModelName=spec.model_name)
    with pytest.raises(RemoteError, match="no endpoint meld-e1"):
        lifecycle.delete_endpoint(client, "meld-e1")


def test_deploy_a_training_jobs_model_with_its_own_image(aws_env: str) -> None:  # noqa: F811
    create_training_job(aws_env, "meldctl-aa-1")
    key = "meldctl/meldctl-aa-1/output/meldctl-aa-1/output/model.tar.gz"
    spec = plan("meldctl-aa-1", image=None, bucket=None)
    with pytest.raises(RemoteError, match="the model of training job meldctl-aa-1 is missing"):
        lifecycle.deploy(session(), spec, poll_s=0)
    s3_client().put_object(Bucket=aws_env, Key=key, Body=model_archive({"best.pt": b"w", "settings.toml": b""}))
    done = lifecycle.deploy(session(), spec, poll_s=0)
    model = boto3.client("sagemaker").describe_model(ModelName=done.model)["PrimaryContainer"]
    assert model["ModelDataUrl"] == f"s3://{aws_env}/{key}"
    assert model["Image"] == "img"  # the job's image: not the AWS PyTorch training image, so a meldctl one


def test_a_job_trained_in_the_aws_pytorch_image_needs_an_image(aws_env: str, monkeypatch) -> None:  # noqa: ANN001, F811
    create_training_job(aws_env, "meldctl-bb-1")
    real = botocore.client.BaseClient._make_api_call

    def aws_image(self, operation: str, params: dict) -> dict:  # noqa: ANN001
        found = real(self, operation, params)
        if operation == "DescribeTrainingJob":
            image = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch:2.11-cu130-amzn2023-sagemaker"
            found["AlgorithmSpecification"]["TrainingImage"] = image
        return found

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", aws_image)
    key = "meldctl/meldctl-bb-1/output/meldctl-bb-1/output/model.tar.gz"
    s3_client().put_object(Bucket=aws_env, Key=key, Body=model_archive({"best.pt": b"w"}))
    with pytest.raises(ConfigError, match="no image"):
        lifecycle.deploy(session(), plan("meldctl-bb-1", image=None), poll_s=0)


@dataclass
class Updates:
    calls: list[dict] = field(default_factory=list)
    fail: bool = False


@pytest.fixture
def update_endpoint(monkeypatch: pytest.MonkeyPatch) -> Updates:
    """moto 5.2 has no UpdateEndpoint: this stands in for that one call, and DescribeEndpoint then reports the
    new config (or, with `fail`, a rolled-back update), as SageMaker does once an update ends. The rest is moto."""
    real, updates = botocore.client.BaseClient._make_api_call, Updates()

    def call(self, operation: str, params: dict) -> dict:  # noqa: ANN001
        if operation == "UpdateEndpoint":
            updates.calls.append(dict(params))
            return {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{params['EndpointName']}"}
        found = real(self, operation, params)
        if operation == "DescribeEndpoint" and updates.calls and updates.fail:
            found["FailureReason"] = "The primary container did not pass the ping health check."
        elif operation == "DescribeEndpoint" and updates.calls:
            found["EndpointConfigName"] = updates.calls[-1]["EndpointConfigName"]
        return found

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return updates


def test_deploying_again_updates_in_place_and_removes_the_previous_model(
    aws_env: str,  # noqa: F811
    checkpoint: Path,
    update_endpoint: Updates,
) -> None:
    client = boto3.client("sagemaker")
    uploads: list[spec_.ModelUpload] = []
    first = lifecycle.deploy(session(), plan(checkpoint, bucket=aws_env), poll_s=0, on_upload=uploads.append)
    second_spec = plan(checkpoint, bucket=aws_env, instance_type="ml.g4dn.2xlarge")
    second = lifecycle.deploy(session(), second_spec, poll_s=0, on_upload=uploads.append)
    assert len(uploads) == 1  # the same checkpoint's archive is already in S3
    assert update_endpoint.calls == [{"EndpointName": "meld-e1", "EndpointConfigName": second.config}]
    assert second.updated and second.removed == [f"endpoint config {first.config}", f"model {first.model}"]
    assert [m["ModelName"] for m in client.list_models()["Models"]] == [second.model]
    variant = client.describe_endpoint_config(EndpointConfigName=second.config)["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.2xlarge"


def test_a_rolled_back_update_says_why_and_keeps_the_old_model(
    aws_env: str,  # noqa: F811
    checkpoint: Path,
    update_endpoint: Updates,
) -> None:
    first = lifecycle.deploy(session(), plan(checkpoint, bucket=aws_env), poll_s=0)
    update_endpoint.fail = True  # SageMaker rolls the update back
    spec = plan(checkpoint, bucket=aws_env)
    with pytest.raises(RemoteError, match="kept the previous model: The primary container did not pass"):
        lifecycle.deploy(session(), spec, poll_s=0)
    client = boto3.client("sagemaker")
    assert [m["ModelName"] for m in client.list_models()["Models"]] == [first.model]  # the new one is removed
    assert client.describe_endpoint(EndpointName="meld-e1")["EndpointConfigName"] == first.config


def test_an_endpoint_that_fails_to_start_gives_its_reason() -> None:
    class Describes:
        def __init__(self) -> None:
            self.answers = iter([{"EndpointStatus": "Creating"}, {"EndpointStatus": "Failed", "FailureReason":
                                 "Image size 12 GB is greater than supported size 10 GB"}])  # fmt: skip

        def describe_endpoint(self, EndpointName: str) -> dict:  # noqa: N803
            return next(self.answers)

    seen = []
    with pytest.raises(RemoteError) as caught:
        lifecycle.wait_for_endpoint(Describes(), "meld-e1", poll_s=0, on_status=lambda s, t: seen.append(s))
    assert seen == ["Creating", "Failed"]
    assert caught.value.message == "endpoint meld-e1 failed to start (Failed): Image size 12 GB is greater than " \
        "supported size 10 GB"  # fmt: skip
    assert "/aws/sagemaker/Endpoints/meld-e1" in (caught.value.hint or "")


def test_async_invocation_goes_through_s3(
    aws_env: str,  # noqa: F811
    checkpoint: Path,
    moto_server,  # noqa: ANN001, F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto writes async answers into its own S3, so this test keeps all of S3 in moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.url)
    boto3.client("s3").create_bucket(Bucket="meldctl-async")
    lifecycle.deploy(session(), plan(checkpoint, bucket="meldctl-async", use_async=True), poll_s=0)
    config = boto3.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=boto3.client("sagemaker").describe_endpoint(EndpointName="meld-e1")["EndpointConfigName"]
    )
    assert (
        config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"]
        == "s3://meldctl-async/meldctl/endpoints/meld-e1/async"
    )
    results = {"results": [{"data": json.dumps(ANSWER)}, {"is_failure": True, "data": '{"error": "empty text"}'}]}
    request = urllib.request.Request(f"{moto_server.url}/moto-api/static/sagemaker/async-endpoint-results",
                                     data=json.dumps(results).encode(), method="POST")  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()
    clip = checkpoint.parent / "a.mp4"
    clip.write_bytes(b"video")
    assert endpoint_invoke.invoke(session(), "meld-e1", clip, "Hi", bucket=None, prefix="meldctl", poll_s=0) == ANSWER
    inputs = boto3.client("s3").list_objects_v2(Bucket="meldctl-async", Prefix="meldctl/endpoints/meld-e1/inputs/")
    assert inputs["KeyCount"] == 1  # the request went to S3 first
    with pytest.raises(RemoteError, match="failed on the request: empty text"):
        endpoint_invoke.invoke(session(), "meld-e1", clip, "", bucket=None, prefix="meldctl", poll_s=0)


def test_endpoint_errors_are_rows_of_the_one_table() -> None:
    def explain(error: ClientError, action: str, **context: str) -> RemoteError:
        return explain_client_error(error, action, resource="endpoint", **context)

    quota = ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": "The account-level service limit "
                        "'ml.g5.xlarge for endpoint usage' is 0 Instances"}}, "CreateEndpoint")  # fmt: skip
    error = explain(quota, "creating endpoint e", instance_type="ml.g5.xlarge")
    assert "ResourceLimitExceeded" in error.message and "'ml.g5.xlarge for endpoint usage'" in error.hint
    assert "--serverless" in error.hint and "training job usage" not in error.hint
    training = explain_client_error(quota, "submitting", instance_type="ml.g5.xlarge")
    assert "'ml.g5.xlarge for training job usage'" in training.hint and "--serverless" not in training.hint
    model_error = ClientError({"Error": {"Code": "ModelError", "Message": 'Received client error (422) from primary '
                              'with message "{"error":"empty text: this checkpoint reads the utterance text"}".'}},
                              "InvokeEndpoint")  # fmt: skip
    assert explain(model_error, "invoking endpoint e").message == (
        "invoking endpoint e: the container refused the request: empty text: this checkpoint reads the utterance text"
    )
    missing = ClientError({"Error": {"Code": "ValidationException", "Message": "Could not find endpoint x."}}, "X")
    assert "meldctl endpoint list" in explain(missing, "invoking endpoint x").hint
    assert "meldctl logs list" in explain_client_error(missing, "describing job x").hint
    other = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "X")
    assert "throttling" in explain(other, "x").hint
