"""Submission through the SageMaker SDK v3 (`sagemaker.train.ModelTrainer`), and the dry run of the same.

The SDK stages meldctl's source code (the version the user runs) and its own container drivers in S3, writes
`sm_train.sh` around the job's command and calls CreateTrainingJob. meldctl reads the request and the answer of
that call from botocore's event hooks, so what it reports is the job the SDK created, not one found by listing.
A dry run builds the same `ModelTrainer` on a session whose every AWS call is answered locally: the request shown
is the one the SDK would send, without credentials or network.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import shutil
import tempfile
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meldctl.errors import RemoteError
from meldctl.remote.aws import aws_errors, first_line
from meldctl.remote.images import import_sdk
from meldctl.remote.jobspec import REQUIREMENTS, JobSpec, job_tags, metric_definitions

# Telemetry of the SDK goes to an AWS endpoint of its own on every train(); meldctl turns it off.
_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# The job's code needs the package only: the embedded sample dataset stays home.
_STAGE_IGNORE = ("__pycache__", "*.pyc", ".*.tmp", "sample")
# What the SDK calls before CreateTrainingJob, with the answer a dry run gives: it stages files, and it checks
# the role, which a dry run cannot (IAM answers "access denied": the SDK then proceeds without a verdict).
_NOT_CHECKED = {"Error": {"Code": "AccessDenied", "Message": "not checked in a dry run"}}
_DRY_RUN_REFUSED = {"SimulatePrincipalPolicy", "GetRole"}
_DRY_RUN_ANSWERS = {
    "PutObject": {"ETag": '"dry-run"'},
    "CreateMultipartUpload": {"UploadId": "dry-run"},
    "UploadPart": {"ETag": '"dry-run"'},
    "CompleteMultipartUpload": {},
    "AbortMultipartUpload": {},
}


@dataclass(frozen=True)
class Submission:
    """The job the SDK created (or, in a dry run, would create) and the CreateTrainingJob request it sent."""

    job_name: str
    arn: str | None
    request: dict[str, Any]


class _Intercepted(Exception):
    """Raised in a dry run where the SDK calls CreateTrainingJob: the request is recorded, nothing is sent."""


class _Recorder:
    """Records CreateTrainingJob's parameters and answer; in a dry run, answers every AWS call itself."""

    def __init__(self, bucket: str, *, dry_run: bool) -> None:
        self.bucket, self.dry_run = bucket, dry_run
        self.request: dict[str, Any] | None = None
        self.arn: str | None = None

    def attach(self, boto_session: Any) -> None:
        # On the session, before the SDK creates its clients: each client copies the session's handlers.
        events = boto_session.events
        events.register("before-parameter-build.sagemaker.CreateTrainingJob", self._record)
        events.register("after-call.sagemaker.CreateTrainingJob", self._answer)
        if self.dry_run:
            events.register("before-call", self._answer_locally)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.request = dict(params)

    def _answer(self, parsed: dict[str, Any], **_: Any) -> None:
        self.arn = parsed.get("TrainingJobArn")

    def _answer_locally(self, model: Any, **_: Any) -> tuple[Any, dict[str, Any]]:
        name = model.name
        if name == "CreateTrainingJob":
            raise _Intercepted
        if name in _DRY_RUN_REFUSED:
            return types.SimpleNamespace(status_code=403, headers={}), _NOT_CHECKED
        if name == "ListBuckets":  # the SDK checks that its staging bucket exists
            answer: dict[str, Any] = {"Buckets": [{"Name": self.bucket, "CreationDate": datetime.datetime.now()}]}
        elif name in _DRY_RUN_ANSWERS:
            answer = _DRY_RUN_ANSWERS[name]
        else:
            raise RemoteError(
                f"dry run: the SageMaker SDK made an AWS call meldctl does not answer offline ({name})",
                hint="run without --dry-run, or report this with your SDK version (pip show sagemaker)",
            )
        return types.SimpleNamespace(status_code=200, headers={}), answer


def create_job(spec: JobSpec, boto_session: Any, *, dry_run: bool = False) -> Submission:
    """Create the training job with the SDK (inputs must be uploaded); with `dry_run`, only build its request.

    Raises:
        RemoteError: the SDK is missing, or it or AWS refused the job (quota, role, bucket, ...).
    """
    import_sdk()
    # A dry run's unchecked role would make the SDK warn; a submission shows the SDK's warnings.
    logging.getLogger("sagemaker").setLevel(logging.ERROR if dry_run else logging.WARNING)
    recorder = _Recorder(spec.bucket, dry_run=dry_run)
    recorder.attach(boto_session)
    with tempfile.TemporaryDirectory(prefix="meldctl-job-") as tmp, _sdk_errors(spec):
        trainer = _trainer(spec, boto_session, stage_source(Path(tmp) / "code", spec.requirements))
        try:
            trainer.train(input_data_config=_inputs(spec), wait=False, logs=False)
        except _Intercepted:
            pass
    if recorder.request is None:
        raise RemoteError("the SageMaker SDK returned without creating a training job", hint="run again with --debug")
    return Submission(recorder.request["TrainingJobName"], recorder.arn, recorder.request)


def dry_run_session(region: str) -> Any:
    """A boto3 session for `create_job(dry_run=True)`: static placeholder keys, so no credential lookup runs."""
    import boto3

    return boto3.Session(region_name=region, aws_access_key_id="dry-run", aws_secret_access_key="dry-run")


def stage_source(folder: Path, requirements: list[str] | None) -> Path:
    """The job's source code: this meldctl package as it is installed, and its requirements (when installed)."""
    import meldctl

    package = Path(meldctl.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(package, folder / "meldctl", ignore=shutil.ignore_patterns(*_STAGE_IGNORE))
    if requirements is not None:
        (folder / REQUIREMENTS).write_text("\n".join(requirements) + "\n", encoding="utf-8")
    return folder


def _trainer(spec: JobSpec, boto_session: Any, source: Path) -> Any:
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        MetricDefinition,
        Networking,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
        Tag,
        TensorBoardOutputConfig,
    )
    from sagemaker.train import ModelTrainer

    session = Session(
        boto_session=boto_session,
        default_bucket=spec.bucket,
        default_bucket_prefix=spec.layout.prefix or None,
        sagemaker_config=_SDK_CONFIG,
    )
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=spec.role,
        base_job_name=spec.base_name,
        training_image=spec.image,
        source_code=SourceCode(
            source_dir=str(source),
            command=spec.command,
            requirements=REQUIREMENTS if spec.requirements is not None else None,
        ),
        compute=Compute(
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            volume_size_in_gb=spec.volume_gb,
            enable_managed_spot_training=spec.spot,
        ),
        networking=Networking(enable_network_isolation=True) if spec.network_isolation else None,
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_run, max_wait_time_in_seconds=spec.max_wait if spec.spot else None
        ),
        output_data_config=OutputDataConfig(s3_output_path=spec.uri("output")),
        checkpoint_config=CheckpointConfig(s3_uri=spec.uri("checkpoints"), local_path=spec.checkpoint_dir),
        hyperparameters=dict(spec.hyperparameters),
        environment=dict(spec.environment),
        tags=[Tag(key=t["Key"], value=t["Value"]) for t in job_tags()],
    )
    return trainer.with_tensorboard_output_config(
        TensorBoardOutputConfig(s3_output_path=spec.uri("tensorboard"), local_path=spec.tensorboard_dir)
    ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions()])


def _inputs(spec: JobSpec) -> list[Any]:
    from sagemaker.core.training.configs import InputData

    return [InputData(channel_name=name, data_source=uri) for name, uri in spec.channels.items()]


@contextlib.contextmanager
def _sdk_errors(spec: JobSpec) -> Iterator[None]:
    """`aws_errors` plus the SDK's own refusals (role validation, invalid configuration)."""
    with aws_errors("submitting the training job", instance_type=spec.instance_type, bucket=spec.bucket):
        try:
            yield
        except (ValueError, TypeError) as exc:
            first = first_line(exc)
            hint = "check --role: it must trust sagemaker.amazonaws.com" if "role" in first.lower() else None
            raise RemoteError(f"the SageMaker SDK refused the job: {first}", hint=hint) from None
        except Exception as exc:
            if type(exc).__name__ != "RoleValidationError":
                raise
            raise RemoteError(
                f"role {spec.role} cannot run training jobs: {first_line(exc)}",
                hint="see docs/remote.md, section 3 (the role the job runs as)",
            ) from None
