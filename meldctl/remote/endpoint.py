"""SageMaker endpoints running `meldctl serve` in meldctl's own image: deploy, invoke, list, delete.

Deploying is four plain boto3 calls, which `--dry-run` prints exactly as they will be sent:

1. the model data: a local checkpoint becomes `model.tar.gz` (best.pt at its top, byte-identical for an
   identical checkpoint) uploaded to `s3://BUCKET/PREFIX/endpoints/models/SHA/model.tar.gz`, so an unchanged
   checkpoint is not sent twice; a training job's own `model.tar.gz` is used where it is;
2. CreateModel: our image (its entrypoint is `meldctl`; SageMaker runs it with `serve`), the model data, the role;
3. CreateEndpointConfig: one variant (instances, or serverless memory), with an async output location if asked;
4. CreateEndpoint, or UpdateEndpoint when the endpoint exists (SageMaker switches configs without downtime);
   then wait for InService, and after an update delete the previous config and model.

Model and config share the name `ENDPOINT-YYYYmmdd-HHMMSS-xxx`, so every deploy is a new pair and `delete`
knows what belongs to an endpoint. Why not the SageMaker SDK's `ModelBuilder`: see docs/serving.md.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import secrets
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meldctl import __version__
from meldctl.errors import ConfigError, RemoteError
from meldctl.io import atomic_path
from meldctl.remote.aws import aws_errors
from meldctl.remote.images import check_instance_type
from meldctl.remote.s3 import parse_s3_uri, s3_uri, upload_file

VARIANT = "AllTraffic"
REALTIME_LIMIT = 6 * 2**20
"""InvokeEndpoint's largest request body; a bigger clip goes through S3 (`clip_s3`)."""
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_CONCURRENCY = 5
STARTUP_TIMEOUT_S = 600  # pulling a multi-GB image and loading the checkpoint take minutes on a fresh instance
TERMINAL = frozenset({"InService", "Failed", "OutOfService", "UpdateRollbackFailed"})
ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the checkpoint holds everything it needs
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_AWS_TRAINING_IMAGES = ("/pytorch:", "/pytorch-training:")  # the default of `train --remote`: cannot serve
_MISSING = ("could not find", "not found", "does not exist")


@dataclass(frozen=True)
class Upload:
    """A local checkpoint to package and upload as the model data."""

    checkpoint: Path
    uri: str


@dataclass
class EndpointSpec:
    """Everything a deploy creates, resolved from the options; the `*_request` methods are the API calls."""

    endpoint: str
    region: str
    role: str | None
    image: str | None
    instance_type: str
    instance_count: int
    model_data: str | None
    upload: Upload | None = None
    training_job: str | None = None
    serverless_memory_mb: int | None = None
    async_output: str | None = None
    stamp: str = field(default_factory=lambda: f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)[:3]}")

    @property
    def model_name(self) -> str:
        return f"{self.endpoint[:43]}-{self.stamp}"

    @property
    def config_name(self) -> str:
        return self.model_name

    def model_request(self) -> dict[str, Any]:
        """CreateModel."""
        return {
            "ModelName": self.model_name,
            "ExecutionRoleArn": self.role,
            "PrimaryContainer": {
                "Image": self.image,
                "ModelDataUrl": self.model_data,
                "Environment": dict(ENVIRONMENT),
                "Mode": "SingleModel",
            },
            "Tags": tags(self.endpoint),
        }

    def config_request(self) -> dict[str, Any]:
        """CreateEndpointConfig: one variant, serverless or on instances, async when asked."""
        variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": self.model_name}
        if self.serverless_memory_mb:
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": self.serverless_memory_mb,
                "MaxConcurrency": SERVERLESS_CONCURRENCY,
            }
        else:
            variant |= {
                "InstanceType": self.instance_type,
                "InitialInstanceCount": self.instance_count,
                "InitialVariantWeight": 1.0,
                "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_TIMEOUT_S,
                "ModelDataDownloadTimeoutInSeconds": STARTUP_TIMEOUT_S,
            }
        request = {"EndpointConfigName": self.config_name, "ProductionVariants": [variant], "Tags": tags(self.endpoint)}
        if self.async_output:
            output = self.async_output.rstrip("/")
            request["AsyncInferenceConfig"] = {
                "OutputConfig": {"S3OutputPath": output, "S3FailurePath": f"{output}/failures"}
            }
        return request

    def endpoint_request(self) -> dict[str, Any]:
        """CreateEndpoint (an existing endpoint gets UpdateEndpoint with the same names instead)."""
        return {"EndpointName": self.endpoint, "EndpointConfigName": self.config_name, "Tags": tags(self.endpoint)}

    @property
    def kind(self) -> str:
        if self.serverless_memory_mb:
            return f"serverless, {self.serverless_memory_mb} MB"
        return f"{self.instance_count} x {self.instance_type}" + (", async" if self.async_output else "")

    def problems(self) -> list[str]:
        """What stops a deploy although the plan can be shown."""
        found = []
        if not self.role:
            found.append("no IAM role: pass --role ARN (or set remote.role)")
        if not self.image:
            found.append("no image: pass --image URI of an image built from meldctl's Dockerfile (docs/serving.md)")
        return found

    def describe(self) -> dict[str, Any]:
        """The plan: what is uploaded, and the three requests."""
        model = self.model_request()
        if self.model_data is None:
            model["PrimaryContainer"]["ModelDataUrl"] = f"<model.tar.gz of training job {self.training_job}>"
        return {
            "region": self.region,
            "endpoint": self.endpoint,
            "source": str(self.upload.checkpoint) if self.upload else f"training job {self.training_job}",
            "upload": {"from": str(self.upload.checkpoint), "to": self.upload.uri} if self.upload else None,
            "create_model": model,
            "create_endpoint_config": self.config_request(),
            "create_or_update_endpoint": self.endpoint_request(),
            "problems": self.problems(),
        }


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


def tags(endpoint: str) -> list[dict[str, str]]:
    """Tags of everything meldctl creates for an endpoint."""
    return [{"Key": "created-by", "Value": f"meldctl {__version__}"}, {"Key": "meldctl-endpoint", "Value": endpoint}]


def check_name(name: str) -> str:
    """An endpoint name SageMaker accepts.

    Raises:
        ConfigError: letters, digits and hyphens only, at most 63, starting and ending with a letter or digit.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a SageMaker endpoint name",
            hint="use letters, digits and hyphens, at most 63 characters, e.g. meldctl-emotion",
        )
    return name


def build_spec(
    source: str,
    *,
    endpoint: str,
    region: str,
    role: str | None,
    image: str | None,
    bucket: str | None,
    prefix: str,
    instance_type: str = "ml.g5.xlarge",
    instance_count: int = 1,
    serverless_memory_mb: int | None = None,
    async_output: str | None = None,
    use_async: bool = False,
) -> EndpointSpec:
    """The deploy plan for a local checkpoint or a training job. Reads the checkpoint (to name its upload), no AWS.

    Raises:
        ConfigError: a bad name, a missing checkpoint, a bucket missing where one is needed, conflicting options.
    """
    check_name(endpoint)
    if not serverless_memory_mb:
        check_instance_type(instance_type, hosting=True)
    if serverless_memory_mb is not None and serverless_memory_mb not in SERVERLESS_MEMORY:
        raise ConfigError(f"--memory-mb {serverless_memory_mb} is not a serverless size", hint="1024 to 6144 by 1024")
    if serverless_memory_mb and use_async:
        raise ConfigError("an endpoint is either --serverless or --async, not both")
    if use_async and not async_output:
        if not bucket:
            raise ConfigError("--async needs --output s3://... (or --bucket) for its answers")
        async_output = s3_uri(bucket, prefix, "endpoints", endpoint, "async")
    if async_output:
        parse_s3_uri(async_output)
    spec = EndpointSpec(
        endpoint=endpoint,
        region=region,
        role=role,
        image=image,
        instance_type=instance_type,
        instance_count=instance_count,
        model_data=None,
        serverless_memory_mb=serverless_memory_mb,
        async_output=async_output if use_async else None,
    )
    checkpoint = Path(source).expanduser()
    if checkpoint.is_file():
        if not bucket:
            raise ConfigError("a local checkpoint is uploaded to S3 first: pass --bucket (or set remote.bucket)")
        uri = s3_uri(bucket, prefix, "endpoints", "models", file_digest(checkpoint)[:16], "model.tar.gz")
        spec.upload, spec.model_data = Upload(checkpoint, uri), uri
    elif checkpoint.suffix in (".pt", ".pth") or "/" in source or checkpoint.is_dir():
        raise ConfigError(f"no checkpoint file {source}", hint="give best.pt of a run, or a training job's name")
    else:
        spec.training_job = source
    return spec


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def package_checkpoint(checkpoint: Path, archive: Path) -> Path:
    """Write `model.tar.gz` holding the checkpoint as `best.pt`, the same bytes for the same checkpoint.

    Timestamps, owners and the gzip header are fixed, so the archive's ETag only changes with the checkpoint
    and `upload_file` skips an unchanged one. Weights barely compress: the fastest gzip level is used.
    """
    with atomic_path(archive) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as packed:
            with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo("best.pt")
                info.size, info.mode = checkpoint.stat().st_size, 0o644
                with open(checkpoint, "rb") as handle:
                    tar.addfile(info, handle)
    return archive


def resolve_training_job(boto: Any, spec: EndpointSpec) -> None:
    """Fill in the model data (and, if no image was given, the job's own meldctl image) of a training job.

    Raises:
        RemoteError: no such job, not completed, its model.tar.gz is missing, or its image cannot serve.
    """
    job = spec.training_job
    with endpoint_errors(f"describing training job {job}"):
        found = boto.client("sagemaker").describe_training_job(TrainingJobName=job)
    status = found.get("TrainingJobStatus")
    if status != "Completed":
        raise RemoteError(f"training job {job} is {status}, not Completed: it has no model to deploy yet")
    model_data = (found.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not model_data or not _object_exists(boto.client("s3"), model_data):
        raise RemoteError(f"the model of training job {job} is missing ({model_data or 'no ModelArtifacts'})")
    spec.model_data = model_data
    training_image = (found.get("AlgorithmSpecification") or {}).get("TrainingImage", "")
    if spec.image is None and training_image and not any(part in training_image for part in _AWS_TRAINING_IMAGES):
        spec.image = training_image  # a meldctl image (train --remote --image) serves as well as it trains


def deploy(
    boto: Any,
    spec: EndpointSpec,
    *,
    on_upload: Callable[[Upload], None] | None = None,
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
        resolve_training_job(boto, spec)
    if spec.problems():
        raise ConfigError(spec.problems()[0])
    client = boto.client("sagemaker")
    existing = find_endpoint(client, spec.endpoint)
    if existing is not None and existing["EndpointStatus"] != "InService":
        raise _not_updatable(spec.endpoint, existing)
    if spec.upload is not None:
        _upload(boto, spec.upload, on_upload)
    with endpoint_errors(f"creating model {spec.model_name}", instance_type=spec.instance_type):
        client.create_model(**spec.model_request())
    try:
        with endpoint_errors(f"creating endpoint {spec.endpoint}", instance_type=spec.instance_type):
            client.create_endpoint_config(**spec.config_request())
            if existing is None:
                client.create_endpoint(**spec.endpoint_request())
            else:
                client.update_endpoint(EndpointName=spec.endpoint, EndpointConfigName=spec.config_name)
    except RemoteError:
        with contextlib.suppress(RemoteError):  # nothing uses them: leave no leftovers, report the first error
            _remove(client, config=spec.config_name, models=[spec.model_name])
        raise
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


def find_endpoint(client: Any, name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when there is no such endpoint."""
    return _describe_or_none(client.describe_endpoint, f"endpoint {name}", EndpointName=name)


def _describe_config(client: Any, config: str) -> dict[str, Any] | None:
    return _describe_or_none(client.describe_endpoint_config, f"endpoint config {config}", EndpointConfigName=config)


def _describe_or_none(describe: Any, what: str, **request: str) -> dict[str, Any] | None:
    """A Describe* call's answer, None when the resource does not exist, any other failure as one line."""
    import botocore.exceptions

    try:
        return describe(**request)
    except botocore.exceptions.ClientError as exc:
        if _is_missing(exc):
            return None
        with endpoint_errors(f"describing {what}"):
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
        with endpoint_errors(f"describing endpoint {name}"):
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


def list_endpoints(client: Any) -> list[EndpointInfo]:
    """Every endpoint of the region (each one costs money while it exists), newest first."""
    with endpoint_errors("listing endpoints"):
        summaries = [
            item
            for page in client.get_paginator("list_endpoints").paginate(SortBy="CreationTime", SortOrder="Descending")
            for item in page.get("Endpoints", [])
        ]
    return [_info(client, summary["EndpointName"]) for summary in summaries]


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
    with endpoint_errors(f"deleting endpoint {name}"):
        client.delete_endpoint(EndpointName=name)
    return [f"endpoint {name}", *_remove(client, config=config, models=models)]


def invocation_body(clip: Path | None, text: str | None) -> tuple[str, bytes]:
    """The multipart/form-data body `/invocations` reads: the clip as a file and the text. Pure."""
    boundary = f"meldctl-{uuid.uuid4().hex}"
    parts = []
    if text is not None:
        parts.append(b'Content-Disposition: form-data; name="text"\r\n\r\n' + text.encode("utf-8"))
    if clip is not None:
        name = json.dumps(clip.name)  # a quoted string with " and \ escaped, as browsers send it
        head = f'Content-Disposition: form-data; name="clip"; filename={name}\r\n'
        parts.append(head.encode("utf-8") + b"Content-Type: application/octet-stream\r\n\r\n" + clip.read_bytes())
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return f"multipart/form-data; boundary={boundary}", body + b"--" + boundary.encode() + b"--\r\n"


def invoke(
    boto: Any,
    name: str,
    clip: Path | None,
    text: str | None,
    *,
    bucket: str | None,
    prefix: str,
    poll_s: float = 5.0,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """One prediction from an endpoint: InvokeEndpoint, or for an async endpoint upload, invoke and poll.

    A clip over the real-time limit goes to S3 first and the request names it (`clip_s3`).

    Raises:
        RemoteError: no such endpoint, not in service, the container refused the request, or no answer in time.
    """
    client = boto.client("sagemaker")
    found = find_endpoint(client, name)
    if found is None:
        raise RemoteError(f"no endpoint {name} in this region", hint="meldctl endpoint list (and check --region)")
    if found["EndpointStatus"] != "InService":
        raise RemoteError(f"endpoint {name} is {found['EndpointStatus']}, not InService")
    config = _describe_config(client, found["EndpointConfigName"]) or {}
    output = ((config.get("AsyncInferenceConfig") or {}).get("OutputConfig") or {}).get("S3OutputPath")
    kind, body = invocation_body(clip, text)
    if output:
        return _invoke_async(boto, name, kind, body, bucket or parse_s3_uri(output)[0], prefix, poll_s, timeout_s)
    if len(body) > REALTIME_LIMIT:
        kind, body = _through_s3(boto, name, clip, text, bucket, prefix)
    with endpoint_errors(f"invoking endpoint {name}"):
        answer = boto.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=name, ContentType=kind, Accept="application/json", Body=body
        )
    return _json_answer(answer["Body"].read(), name)


@contextlib.contextmanager
def endpoint_errors(action: str, *, instance_type: str | None = None) -> Iterator[None]:
    """`aws_errors`, with endpoint-specific hints: endpoint quotas, missing endpoints, container errors."""
    import botocore.exceptions

    with aws_errors(action, instance_type=instance_type):
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            explained = explain_endpoint_error(exc, action, instance_type=instance_type)
            if explained is None:
                raise
            raise explained from None


def explain_endpoint_error(exc: Any, action: str, *, instance_type: str | None = None) -> RemoteError | None:
    """A `RemoteError` for the endpoint failures users meet most; None to leave it to `aws_errors`."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", "")) or str(exc)
    what = f"{action}: {code}: {message}"
    if code == "ResourceLimitExceeded":
        kind = instance_type or "the instance type"
        return RemoteError(
            what,
            hint=f"ask for more in Service Quotas (Amazon SageMaker, '{kind} for endpoint usage'), pick another "
            "--instance-type, or try --serverless; see docs/serving.md",
        )
    if code == "ModelError":
        return RemoteError(f"{action}: the container refused the request: {_container_error(message)}")
    if code == "ValidationException" and "endpoint" in message.lower() and _is_missing(exc):
        return RemoteError(what, hint="meldctl endpoint list (and check --region)")
    if code == "ValidationException" and "image" in message.lower():
        return RemoteError(what, hint="push the image to ECR in this region and pass its URI (docs/serving.md)")
    return None


def _upload(boto: Any, upload: Upload, on_upload: Callable[[Upload], None] | None) -> None:
    """Package and upload the checkpoint, unless its archive is already there (the key holds its SHA-256)."""
    import tempfile

    s3 = boto.client("s3")
    if _object_exists(s3, upload.uri):
        return
    if on_upload is not None:
        on_upload(upload)
    bucket, _ = parse_s3_uri(upload.uri)
    with tempfile.TemporaryDirectory(prefix="meldctl-endpoint-") as tmp:
        archive = package_checkpoint(upload.checkpoint, Path(tmp) / "model.tar.gz")
        with aws_errors("uploading the model", bucket=bucket):
            upload_file(s3, archive, upload.uri)


def _through_s3(
    boto: Any, name: str, clip: Path | None, text: str | None, bucket: str | None, prefix: str
) -> tuple[str, bytes]:
    if clip is None or not bucket:
        raise RemoteError(
            f"the request is over the {REALTIME_LIMIT // 2**20} MB a real-time endpoint accepts",
            hint="pass --bucket: the clip then goes to S3 and the endpoint fetches it (its role must read the bucket)",
        )
    key = f"{prefix.strip('/')}/endpoints/{name}/inputs/{uuid.uuid4().hex}/{clip.name}".lstrip("/")
    with aws_errors("uploading the clip", bucket=bucket):
        boto.client("s3").upload_file(str(clip), bucket, key)
    payload = {"text": text, "clip_s3": f"s3://{bucket}/{key}", "clip_name": clip.name}
    return "application/json", json.dumps(payload).encode("utf-8")


def _invoke_async(
    boto: Any, name: str, kind: str, body: bytes, bucket: str, prefix: str, poll_s: float, timeout_s: float
) -> dict[str, Any]:
    s3 = boto.client("s3")
    key = f"{prefix.strip('/')}/endpoints/{name}/inputs/{uuid.uuid4().hex}.multipart".lstrip("/")
    with aws_errors("uploading the request", bucket=bucket):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)
    with endpoint_errors(f"invoking endpoint {name}"):
        answer = boto.client("sagemaker-runtime").invoke_endpoint_async(
            EndpointName=name, InputLocation=f"s3://{bucket}/{key}", ContentType=kind, Accept="application/json"
        )
    output, failure = answer["OutputLocation"], answer.get("FailureLocation")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if failure and _object_exists(s3, failure):
            raise RemoteError(f"endpoint {name} failed on the request: {_container_error(_read_object(s3, failure))}")
        if _object_exists(s3, output):
            return _json_answer(_read_object(s3, output).encode("utf-8"), name)
        time.sleep(poll_s)
    raise RemoteError(f"no answer from endpoint {name} after {timeout_s:g} s", hint=f"it will appear at {output}")


def _json_answer(raw: bytes, name: str) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RemoteError(f"endpoint {name} answered something that is not JSON: {raw[:200]!r}") from None
    if not isinstance(answer, dict):
        raise RemoteError(f"endpoint {name} answered JSON that is not a prediction: {str(answer)[:200]}")
    return answer


def _container_error(message: str) -> str:
    """The `error` sentence of `meldctl serve`'s JSON inside SageMaker's ModelError message, if there is one."""
    start = message.find("{")
    if start >= 0:
        with contextlib.suppress(json.JSONDecodeError, ValueError):
            inner = json.loads(message[start : message.rfind("}") + 1])
            if isinstance(inner, dict) and "error" in inner:
                return str(inner["error"])
    return message.strip()


def _object_exists(s3: Any, uri: str) -> bool:
    import botocore.exceptions

    bucket, key = parse_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        with aws_errors(f"reading {uri}", bucket=bucket):
            raise
    return True


def _read_object(s3: Any, uri: str) -> str:
    bucket, key = parse_s3_uri(uri)
    with aws_errors(f"reading {uri}", bucket=bucket):
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")


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
    found = _describe_config(client, config) or {}
    return [variant["ModelName"] for variant in found.get("ProductionVariants", []) if variant.get("ModelName")]


def _remove(client: Any, *, config: str | None, models: list[str]) -> list[str]:
    """Delete an endpoint config and models, skipping those already gone; returns what was deleted."""
    calls = [("endpoint config", config, client.delete_endpoint_config, "EndpointConfigName")] if config else []
    calls += [("model", model, client.delete_model, "ModelName") for model in models]
    return [f"{what} {name}" for what, name, call, key in calls if _delete_if_present(call, key, name, what)]


def _delete_if_present(call: Callable[..., Any], key: str, name: str, what: str) -> bool:
    import botocore.exceptions

    with endpoint_errors(f"deleting {what} {name}"):
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
    config = (_describe_config(client, config_name) if config_name else None) or {}
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
