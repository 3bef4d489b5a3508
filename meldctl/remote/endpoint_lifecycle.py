"""SageMaker endpoints over their life: the checks before a deploy, the deploy, waiting, listing, deleting.

A deploy uploads the model data if needed, creates model and config, creates or updates the endpoint, waits for
InService, and after an update deletes the previous config and model. Everything runs inside the AWS error
boundary with the endpoint's hints (`aws_errors(..., resource="endpoint")`): every failure is one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meldctl.errors import ConfigError, RemoteError
from meldctl.remote.aws import aws_boundary, aws_errors, check_bucket
from meldctl.remote.checks import check_image
from meldctl.remote.endpoint_spec import EndpointSpec, ModelUpload, package_checkpoint
from meldctl.remote.s3 import object_exists, parse_s3_uri, upload_file

ENDPOINT = "endpoint"  # the resource of `aws_errors`: endpoint quotas, `meldctl endpoint list`
TERMINAL = frozenset({"InService", "Failed", "OutOfService", "UpdateRollbackFailed"})
_AWS_TRAINING_IMAGES = ("/pytorch:", "/pytorch-training:")  # the default of `train --remote`: cannot serve
_MISSING = ("could not find", "not found", "does not exist")


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint as `endpoint list` shows it."""

    name: str
    status: str
    kind: str
    config: str | None
    created: str | None
    failure_reason: str | None


@dataclass(frozen=True)
class Deployed:
    """What a deploy did."""

    endpoint: str
    status: str
    updated: bool
    model: str
    config: str
    model_data: str
    removed: list[str]


@aws_boundary("checking the deploy", resource=ENDPOINT)
def check_deploy(boto: Any, spec: EndpointSpec) -> EndpointSpec:
    """What a deploy checks before anything is loaded or created: role and image given, buckets in its region;
    a training job's model data looked up. Returns the spec with that model data.

    Raises:
        ConfigError: no role or no image, an image of another region.
        RemoteError: a bucket missing, not ours or in another region; the training job has no model to serve.
    """
    if spec.training_job and spec.model_data is None:
        spec = resolve_training_job(boto, spec)
    if spec.problems():
        raise ConfigError(spec.problems()[0])
    check_image(str(spec.image), spec.region)  # a training job's own image too
    for bucket in spec.buckets:
        check_bucket(boto, bucket, purpose="the endpoint")
    return spec


def resolve_training_job(boto: Any, spec: EndpointSpec) -> EndpointSpec:
    """The spec with a training job's model data (and, if no image was given, the job's own meldctl image).

    Raises:
        RemoteError: no such job, not completed, its model.tar.gz is missing, or its image cannot serve.
    """
    job = spec.training_job
    with aws_errors(f"describing training job {job}"):
        found = boto.client("sagemaker").describe_training_job(TrainingJobName=job)
    status = found.get("TrainingJobStatus")
    if status != "Completed":
        raise RemoteError(f"training job {job} is {status}, not Completed: it has no model to deploy yet")
    model_data = (found.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    with aws_errors(f"looking for the model of training job {job}"):
        there = bool(model_data) and object_exists(boto.client("s3"), model_data)
    if not there:
        raise RemoteError(f"the model of training job {job} is missing ({model_data or 'no ModelArtifacts'})")
    image = spec.image
    training_image = (found.get("AlgorithmSpecification") or {}).get("TrainingImage", "")
    if image is None and training_image and not any(part in training_image for part in _AWS_TRAINING_IMAGES):
        image = training_image  # a meldctl image (train --remote --image) serves as well as it trains
    return dataclasses.replace(spec, model_data=model_data, image=image)


@aws_boundary("deploying the endpoint", resource=ENDPOINT)
def deploy(
    boto: Any,
    spec: EndpointSpec,
    *,
    on_upload: Callable[[ModelUpload], None] | None = None,
    on_status: Callable[[str, float], None] | None = None,
    wait: bool = True,
    poll_s: float = 15.0,
    timeout_s: float = 3600.0,
) -> Deployed:
    """Upload the model data if needed, create model and config, create or update the endpoint, wait.

    Raises:
        ConfigError: the spec has problems (no role, no image).
        RemoteError: AWS refused a call, or the endpoint failed to start (with SageMaker's FailureReason).
    """
    if spec.training_job and spec.model_data is None:
        spec = resolve_training_job(boto, spec)
    if spec.problems():
        raise ConfigError(spec.problems()[0])
    client = boto.client("sagemaker")
    existing = find_endpoint(client, spec.endpoint)
    if existing is not None and existing["EndpointStatus"] != "InService":
        raise _not_updatable(spec.endpoint, existing)
    if spec.upload is not None:
        _upload(boto, spec.upload, on_upload)
    _create(client, spec, update=existing is not None)
    status, removed = "Creating" if existing is None else "Updating", []
    if wait:
        final = wait_for_endpoint(client, spec.endpoint, on_status=on_status, poll_s=poll_s, timeout_s=timeout_s)
        status = final["EndpointStatus"]
        if existing is not None:
            if final.get("EndpointConfigName") != spec.config_name:
                reason = final.get("FailureReason") or "no reason given"
                with contextlib.suppress(RemoteError):  # the new pair serves nothing: remove it
                    _remove(client, config=spec.config_name, models=[spec.model_name])
                raise RemoteError(
                    f"the update of endpoint {spec.endpoint} failed and SageMaker kept the previous model: {reason}",
                    hint=f"its container log is in CloudWatch: /aws/sagemaker/Endpoints/{spec.endpoint}",
                )
            removed = _remove_previous(client, spec.endpoint, existing["EndpointConfigName"])
    return Deployed(spec.endpoint, status, existing is not None, spec.model_name, spec.config_name,
                    str(spec.model_data), removed)  # fmt: skip


def _create(client: Any, spec: EndpointSpec, *, update: bool) -> None:
    """CreateModel, CreateEndpointConfig, then CreateEndpoint or UpdateEndpoint; no leftovers on a refusal."""
    with aws_errors(f"creating model {spec.model_name}", instance_type=spec.instance_type, resource=ENDPOINT):
        client.create_model(**spec.model_request())
    try:
        with aws_errors(f"creating endpoint {spec.endpoint}", instance_type=spec.instance_type, resource=ENDPOINT):
            client.create_endpoint_config(**spec.config_request())
            if update:
                client.update_endpoint(EndpointName=spec.endpoint, EndpointConfigName=spec.config_name)
            else:
                client.create_endpoint(**spec.endpoint_request())
    except RemoteError:
        with contextlib.suppress(RemoteError):  # nothing uses them: leave no leftovers, report the first error
            _remove(client, config=spec.config_name, models=[spec.model_name])
        raise


def find_endpoint(client: Any, name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when there is no such endpoint."""
    return _describe_or_none(client.describe_endpoint, f"endpoint {name}", EndpointName=name)


def describe_config(client: Any, config: str) -> dict[str, Any] | None:
    """DescribeEndpointConfig, or None when there is no such config."""
    return _describe_or_none(client.describe_endpoint_config, f"endpoint config {config}", EndpointConfigName=config)


def in_service(client: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The endpoint and its config, for a call to it.

    Raises:
        RemoteError: no such endpoint, or it is not InService.
    """
    found = find_endpoint(client, name)
    if found is None:
        raise RemoteError(f"no endpoint {name} in this region", hint="meldctl endpoint list (and check --region)")
    if found.get("EndpointStatus") != "InService":
        raise RemoteError(f"endpoint {name} is {found.get('EndpointStatus')}, not InService")
    return found, describe_config(client, found["EndpointConfigName"]) or {}


def _describe_or_none(describe: Any, what: str, **request: str) -> dict[str, Any] | None:
    """A Describe* call's answer, None when the resource does not exist, any other failure as one line."""
    import botocore.exceptions

    with aws_errors(f"describing {what}", resource=ENDPOINT):
        try:
            return describe(**request)
        except botocore.exceptions.ClientError as exc:
            if _is_missing(exc):
                return None
            raise


def wait_for_endpoint(
    client: Any,
    name: str,
    *,
    on_status: Callable[[str, float], None] | None = None,
    poll_s: float = 15.0,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Poll DescribeEndpoint until InService (or another final state); `on_status(status, elapsed)` each poll.

    Raises:
        RemoteError: the endpoint failed or went out of service (with its FailureReason), or it took too long.
    """
    start = time.monotonic()
    while True:
        with aws_errors(f"describing endpoint {name}", resource=ENDPOINT):
            found = client.describe_endpoint(EndpointName=name)
        status, elapsed = found["EndpointStatus"], time.monotonic() - start
        if on_status is not None:
            on_status(status, elapsed)
        if status in TERMINAL:
            break
        if elapsed > timeout_s:
            raise RemoteError(
                f"endpoint {name} is still {status} after {timeout_s / 60:.0f} min",
                hint="it keeps going: check it with meldctl endpoint list",
            )
        time.sleep(poll_s)
    if status != "InService":
        raise RemoteError(
            f"endpoint {name} failed to start ({status}): {found.get('FailureReason') or 'no reason given'}",
            hint=f"its container log is in CloudWatch: /aws/sagemaker/Endpoints/{name}; delete it with "
            f"meldctl endpoint delete {name}",
        )
    return found


@aws_boundary("listing endpoints", resource=ENDPOINT)
def list_endpoints(client: Any) -> list[EndpointInfo]:
    """Every endpoint of the region (each one costs money while it exists), newest first."""
    summaries = [
        item
        for page in client.get_paginator("list_endpoints").paginate(SortBy="CreationTime", SortOrder="Descending")
        for item in page.get("Endpoints", [])
    ]
    return [_info(client, summary["EndpointName"]) for summary in summaries]


@aws_boundary("deleting the endpoint", resource=ENDPOINT)
def delete_endpoint(client: Any, name: str) -> list[str]:
    """Delete the endpoint, its config and its model(s); returns what was deleted.

    Raises:
        RemoteError: no such endpoint, or AWS refused.
    """
    found = find_endpoint(client, name)
    if found is None:
        raise RemoteError(f"no endpoint {name} in this region", hint="meldctl endpoint list (and check --region)")
    config = found.get("EndpointConfigName")
    models = _config_models(client, config) if config else []
    with aws_errors(f"deleting endpoint {name}", resource=ENDPOINT):
        client.delete_endpoint(EndpointName=name)
    return [f"endpoint {name}", *_remove(client, config=config, models=models)]


def _upload(boto: Any, upload: ModelUpload, on_upload: Callable[[ModelUpload], None] | None) -> None:
    """Package and upload the checkpoint, unless its archive is already there (the key holds its SHA-256)."""
    s3 = boto.client("s3")
    bucket, _ = parse_s3_uri(upload.uri)
    with aws_errors("uploading the model", bucket=bucket, resource=ENDPOINT):
        if object_exists(s3, upload.uri):
            return
        if on_upload is not None:
            on_upload(upload)
        with tempfile.TemporaryDirectory(prefix="meldctl-endpoint-") as tmp:
            archive = package_checkpoint(upload.checkpoint, Path(tmp) / "model.tar.gz")
            upload_file(s3, archive, upload.uri)


def _not_updatable(name: str, existing: dict[str, Any]) -> RemoteError:
    status = existing["EndpointStatus"]
    if status in ("Failed", "OutOfService", "UpdateRollbackFailed"):
        reason = existing.get("FailureReason") or "no reason given"
        return RemoteError(
            f"endpoint {name} exists but is {status} ({reason}): it cannot be updated",
            hint=f"delete it first: meldctl endpoint delete {name}",
        )
    return RemoteError(f"endpoint {name} is {status}: wait until it is InService, then deploy again")


def _config_models(client: Any, config: str) -> list[str]:
    found = describe_config(client, config) or {}
    return [variant["ModelName"] for variant in found.get("ProductionVariants", []) if variant.get("ModelName")]


def _remove(client: Any, *, config: str | None, models: list[str]) -> list[str]:
    """Delete an endpoint config and models, skipping those already gone; returns what was deleted."""
    calls = [("endpoint config", config, client.delete_endpoint_config, "EndpointConfigName")] if config else []
    calls += [("model", model, client.delete_model, "ModelName") for model in models]
    return [f"{what} {name}" for what, name, call, key in calls if _delete_if_present(call, key, name, what)]


def _delete_if_present(call: Callable[..., Any], key: str, name: str, what: str) -> bool:
    import botocore.exceptions

    with aws_errors(f"deleting {what} {name}", resource=ENDPOINT):
        try:
            call(**{key: name})
        except botocore.exceptions.ClientError as exc:
            if _is_missing(exc):
                return False
            raise
    return True


def _remove_previous(client: Any, endpoint: str, config: str) -> list[str]:
    """After an update: the previous config and models, if meldctl named them for this endpoint."""
    if not config.startswith(f"{endpoint[:43]}-"):
        return []  # created by someone else: leave it
    models = [model for model in _config_models(client, config) if model.startswith(f"{endpoint[:43]}-")]
    return _remove(client, config=config, models=models)


def _info(client: Any, name: str) -> EndpointInfo:
    found = find_endpoint(client, name) or {"EndpointName": name, "EndpointStatus": "Deleting"}
    config_name = found.get("EndpointConfigName")
    config = (describe_config(client, config_name) if config_name else None) or {}
    variants = config.get("ProductionVariants") or [{}]
    created = found.get("CreationTime")
    return EndpointInfo(
        name=name,
        status=found["EndpointStatus"],
        kind=_variant_kind(variants[0], bool(config.get("AsyncInferenceConfig"))),
        config=config_name,
        created=created.isoformat(timespec="seconds") if hasattr(created, "isoformat") else None,
        failure_reason=found.get("FailureReason"),
    )


def _variant_kind(variant: dict[str, Any], is_async: bool) -> str:
    if variant.get("ServerlessConfig"):
        return f"serverless, {variant['ServerlessConfig'].get('MemorySizeInMB')} MB"
    if not variant.get("InstanceType"):
        return "-"
    return f"{variant.get('InitialInstanceCount', 1)} x {variant['InstanceType']}" + (", async" if is_async else "")


def _is_missing(exc: Any) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return str(error.get("Code")) in ("ValidationException", "ResourceNotFound") and any(m in message for m in _MISSING)
