"""The endpoint meldctl asks for, built from the options alone (no AWS call): `build_spec`.

Deploying is four plain boto3 calls (`endpoint_lifecycle.deploy`), which `--dry-run` prints exactly as they
will be sent:

1. the model data: a local checkpoint becomes `model.tar.gz` (best.pt at its top, byte-identical for an
   identical checkpoint) uploaded to `s3://BUCKET/PREFIX/endpoints/models/SHA/model.tar.gz`, so an unchanged
   checkpoint is not sent twice; a training job's own `model.tar.gz` is used where it is;
2. CreateModel: our image (its entrypoint is `meldctl`; SageMaker runs it with `serve`), the model data, the role;
3. CreateEndpointConfig: one variant (instances, or serverless memory), with an async output location if asked;
4. CreateEndpoint, or UpdateEndpoint when the endpoint exists (SageMaker switches configs without downtime).

Model and config share the name `ENDPOINT-YYYYmmdd-HHMMSS-xxx`, so every deploy is a new pair and `delete`
knows what belongs to an endpoint. Why not the SageMaker SDK's `ModelBuilder`: see docs/serving.md.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import secrets
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meldctl import __version__
from meldctl.errors import ConfigError
from meldctl.io import atomic_path
from meldctl.remote.checks import check_request
from meldctl.remote.s3 import parse_s3_uri, s3_uri

INSTANCE_TYPE = "ml.g5.xlarge"
"""The default instance of a real-time or async endpoint: one A10G GPU, as training's default."""
VARIANT = "AllTraffic"
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_CONCURRENCY = 5
STARTUP_TIMEOUT_S = 600  # pulling a multi-GB image and loading the checkpoint take minutes on a fresh instance
ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the checkpoint holds everything it needs
ALLOW_S3_VARIABLE = "MELDCTL_SERVE__ALLOW_S3"
"""The container's setting `serve.allow_s3`: the S3 prefixes its `clip_s3`/`video_s3` requests may name."""
ASYNC_TIMEOUT_S = 3600
"""An async request's longest run (InvokeEndpointAsync's InvocationTimeoutSeconds at most): the container's
`serve.timeout_s` on an async endpoint, whose requests are whole videos."""
ASYNC_ENVIRONMENT = {
    "MELDCTL_SERVE__TIMEOUT_S": str(ASYNC_TIMEOUT_S),
    # serve's default of 30 minutes suits a real-time endpoint's 60 s only on a fast GPU anyway; an async one
    # is for episodes and meetings, and `meldctl analyze` runs at several times real time on a GPU.
    "MELDCTL_SERVE__MAX_VIDEO_MINUTES": "120",
}
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass(frozen=True)
class ModelUpload:
    """A local checkpoint to package and upload as the model data."""

    checkpoint: Path
    uri: str


@dataclass(frozen=True)
class EndpointSpec:
    """Everything a deploy creates, resolved from the options; the `*_request` methods are the API calls."""

    endpoint: str
    region: str
    role: str | None
    image: str | None
    instance_type: str
    instance_count: int
    model_data: str | None
    upload: ModelUpload | None = None
    training_job: str | None = None
    serverless_memory_mb: int | None = None
    async_output: str | None = None
    inputs: str | None = None
    stamp: str = field(default_factory=lambda: f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)[:3]}")

    @property
    def model_name(self) -> str:
        return f"{self.endpoint[:43]}-{self.stamp}"

    @property
    def config_name(self) -> str:
        return self.model_name

    def environment(self) -> dict[str, str]:
        """The container's environment: offline model hubs, and the S3 prefix its requests may read."""
        found = dict(ENVIRONMENT) | (ASYNC_ENVIRONMENT if self.async_output else {})
        if self.inputs:
            found[ALLOW_S3_VARIABLE] = self.inputs.removeprefix("s3://")
        return found

    def model_request(self) -> dict[str, Any]:
        """CreateModel."""
        return {
            "ModelName": self.model_name,
            "ExecutionRoleArn": self.role,
            "PrimaryContainer": {
                "Image": self.image,
                "ModelDataUrl": self.model_data,
                "Environment": self.environment(),
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

    @property
    def buckets(self) -> list[str]:
        """The buckets this deploy writes to or names: they must be in the endpoint's region."""
        uris = [self.upload.uri if self.upload else None, self.async_output, self.inputs]
        return sorted({parse_s3_uri(uri)[0] for uri in uris if uri})

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


def inputs_prefix(bucket: str, prefix: str, endpoint: str) -> str:
    """Where requests too large for the body go (clips, videos, async requests): the container may read it."""
    return s3_uri(bucket, prefix, "endpoints", endpoint, "inputs")


def build_spec(
    source: str,
    *,
    endpoint: str,
    region: str,
    role: str | None,
    image: str | None,
    bucket: str | None,
    prefix: str,
    instance_type: str = INSTANCE_TYPE,
    instance_count: int = 1,
    serverless_memory_mb: int | None = None,
    async_output: str | None = None,
    use_async: bool = False,
) -> EndpointSpec:
    """The deploy plan for a local checkpoint or a training job. Reads the checkpoint (to name its upload), no AWS.

    Raises:
        ConfigError: a bad name, role, image region or instance type, a missing checkpoint, a bucket missing where
            one is needed, conflicting options.
    """
    check_name(endpoint)
    check_request(
        role=role,
        image=image,
        region=region,
        instance_type=None if serverless_memory_mb else instance_type,
        hosting=True,
    )
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
    upload, training_job = _model_source(source, bucket, prefix)
    return EndpointSpec(
        endpoint=endpoint,
        region=region,
        role=role,
        image=image,
        instance_type=instance_type,
        instance_count=instance_count,
        model_data=upload.uri if upload else None,
        upload=upload,
        training_job=training_job,
        serverless_memory_mb=serverless_memory_mb,
        async_output=async_output if use_async else None,
        inputs=inputs_prefix(bucket, prefix, endpoint) if bucket else None,
    )


def _model_source(source: str, bucket: str | None, prefix: str) -> tuple[ModelUpload | None, str | None]:
    """A local checkpoint's upload, or the name of the training job whose model to use."""
    checkpoint = Path(source).expanduser()
    if checkpoint.is_file():
        if not bucket:
            raise ConfigError("a local checkpoint is uploaded to S3 first: pass --bucket (or set remote.bucket)")
        uri = s3_uri(bucket, prefix, "endpoints", "models", file_digest(checkpoint)[:16], "model.tar.gz")
        return ModelUpload(checkpoint, uri), None
    if checkpoint.suffix in (".pt", ".pth") or "/" in source or checkpoint.is_dir():
        raise ConfigError(f"no checkpoint file {source}", hint="give best.pt of a run, or a training job's name")
    return None, source


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
