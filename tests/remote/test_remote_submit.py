from __future__ import annotations

import json

import boto3
import pytest
from aws_servers import ROLE, aws_env, moto_server, s3_client, s3_server  # noqa: F401

from meldctl.errors import RemoteError
from meldctl.remote.aws import session
from meldctl.remote.jobspec import build_job_spec
from meldctl.remote.submit import create_job, dry_run_session
from meldctl.settings import load_settings


def spec(bucket: str, **remote: object):  # noqa: ANN201
    settings = load_settings(None, {"remote": {"role": ROLE, "bucket": bucket, "data": f"s3://{bucket}/d/", **remote},
                                    "train": {"batch_size": 16}})  # fmt: skip
    return build_job_spec(settings, region="us-east-1", base_name="meldctl-0a0b0c")


def normalised(request: dict) -> str:
    """The request with its name (the submission time) taken out."""
    return json.dumps(request, sort_keys=True).replace(request["TrainingJobName"], "JOB")


def test_the_dry_run_shows_the_request_the_sdk_sends(aws_env: str) -> None:  # noqa: F811
    planned = create_job(spec(aws_env, spot=True, instance_count=2), dry_run_session("us-east-1"), dry_run=True)
    assert planned.arn is None
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []  # nothing was created
    assert "Contents" not in s3_client().list_objects_v2(Bucket=aws_env)  # nor staged

    submitted = create_job(spec(aws_env, spot=True, instance_count=2), session())
    assert normalised(planned.request) == normalised(submitted.request)
    request = submitted.request
    assert request["HyperParameters"]["train__batch_size"] == "16"
    assert request["EnableManagedSpotTraining"] is True and request["ResourceConfig"]["InstanceCount"] == 2
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]

    # The job reported is the one the SDK's CreateTrainingJob call created, named in AWS's answer.
    assert submitted.arn is not None and submitted.arn.endswith(f"training-job/{submitted.job_name}")
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=submitted.job_name)
    assert job["TrainingJobArn"] == submitted.arn
    code = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "code")
    prefix = code["DataSource"]["S3DataSource"]["S3Uri"].removeprefix(f"s3://{aws_env}/")
    staged = {
        o["Key"].removeprefix(prefix + "/")
        for o in s3_client().list_objects_v2(Bucket=aws_env, Prefix=prefix)["Contents"]
    }
    assert {"meldctl/__init__.py", "requirements.txt"} <= staged


def test_a_quota_of_zero_is_one_line_with_the_quota_to_ask_for(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    boto = session()

    def refuse(model, **_: object):  # noqa: ANN001, ANN202 - AWS's answer to a job beyond the quota
        import types

        if model.name != "CreateTrainingJob":
            return None
        error = {"Code": "ResourceLimitExceeded", "Message": "The account-level service limit 'ml.g5.xlarge for "
                 "training job usage' is 0 Instances, with current utilization of 0 Instances"}  # fmt: skip
        return types.SimpleNamespace(status_code=400, headers={}), {"Error": error}

    boto.events.register("before-call", refuse)
    with pytest.raises(RemoteError) as caught:
        create_job(spec(aws_env), boto)
    assert "ResourceLimitExceeded" in caught.value.message
    assert "Service Quotas" in (caught.value.hint or "") and "ml.g5.xlarge for training job usage" in caught.value.hint
