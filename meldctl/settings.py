"""Resolved settings: command-line flags over a SageMaker job's hyperparameters over `MELDCTL_*` environment over
a TOML file over defaults.

`load_settings()` is the only code that reads the environment or the TOML file. Commands hand one
section (`settings.train`, ...) to the code below them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict, SettingsError

from meldctl.errors import ConfigError
from meldctl.model.config import ModelConfig, PreprocessConfig, setting_fields, split_commas

ENV_PREFIX = "MELDCTL_"
DEFAULT_CONFIG_FILE = Path("meldctl.toml")
MELD_URL = "http://web.eecs.umich.edu/~mihalcea/downloads/MELD.Raw.tar.gz"
# The label CSVs in the dataset's public repository, at the commit whose digests meldctl.data.meld records.
MELD_LABELS_URL = (
    "https://raw.githubusercontent.com/declare-lab/MELD/2d2011b409d3ca2d7e94460cd007d434b1d0a102/data/MELD/"
)

CommaList = Annotated[list[str], NoDecode]
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class _Section(BaseModel):
    # No setting means anything as inf or nan: `--lr inf` would train on NaN losses instead of failing at once.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataSettings(_Section):
    """Where the dataset lives and how `prepare` builds it."""

    data_dir: Path = Field(Path("data"), description="Folder for the archive, clips, audio, manifests, cache.")
    source: str = Field(
        "default", description="What `prepare` reads: default, sample, labels (the CSVs only), a URL or a local path."
    )
    url: str = Field(MELD_URL, description="Official MELD.Raw.tar.gz address used by the default source.")
    mirror: str | None = Field(None, description="Another host for MELD.Raw.tar.gz; replaces `url`.")
    sha256: str | None = Field(None, description="Expected SHA-256 of the downloaded archive (optional).")
    labels_url: str = Field(
        MELD_LABELS_URL,
        description="Base URL of the three label CSVs for `--source labels` (their names are appended); a mirror.",
    )
    splits: CommaList = Field(["train", "dev", "test"], description="Splits to prepare and use.")
    workers: int = Field(0, ge=0, description="Parallel FFmpeg processes in prepare; 0 means one per core.")
    max_clip_seconds: float = Field(
        30.0,
        gt=0,
        description="Clips longer than this are marked too_long (MELD has mis-cut clips of minutes).",
    )
    ffmpeg_timeout_s: float = Field(120.0, gt=0, description="Timeout for one FFmpeg audio extraction.")
    cache: bool = Field(True, description="Cache frozen-encoder features under data_dir/cache.")

    _split_splits = field_validator("splits", mode="before")(split_commas)

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in ("train", "dev", "test")]
        if unknown or not value:
            raise ValueError("splits are a non-empty subset of train, dev, test")
        return value


class _ModelSection(_Section):
    """The model that `train` builds, and the preprocessing recorded in its checkpoints.

    Its fields are those of `ModelConfig` and `PreprocessConfig` marked as settings (defined once, in
    `meldctl.model.config`), plus `checkpoint`; `to_model_config()` and `to_preprocess()` turn them back.
    """

    @model_validator(mode="after")
    def _consistent(self) -> _ModelSection:
        # Rules across fields (the crop fits inside the resized frame, ...) are the preprocessing's own.
        try:
            self.to_preprocess()
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    def to_model_config(self) -> ModelConfig:
        """The architecture these settings ask for."""
        values = {name: getattr(self, name) for name in setting_fields(ModelConfig)}
        # The audio encoder takes the spectrogram that the preprocessing makes: one value, two places.
        return ModelConfig(**values, n_mels=self.n_mels)

    def to_preprocess(self) -> PreprocessConfig:
        """The preprocessing these settings ask for."""
        return PreprocessConfig(**{name: getattr(self, name) for name in setting_fields(PreprocessConfig)})


def _model_settings() -> type[_ModelSection]:
    fields: dict[str, Any] = {}
    for config in (ModelConfig, PreprocessConfig):
        for name in setting_fields(config):
            info = config.model_fields[name]
            annotation = info.annotation
            if get_origin(annotation) is tuple:  # `text,audio` in an environment variable is not JSON
                annotation = Annotated[annotation, NoDecode]
            fields[name] = (annotation, info)
    fields["checkpoint"] = (
        Path | None,
        Field(None, description="Default checkpoint for predict (else newest runs/*/best.pt)."),
    )
    return create_model("ModelSettings", __base__=_ModelSection, **fields)


ModelSettings = _model_settings()


class TrainSettings(_Section):
    """The training loop."""

    run_dir: Path | None = Field(None, description="Run folder; default runs/<timestamp>.")
    runs_root: Path = Field(Path("runs"), description="Parent of timestamped run folders.")
    epochs: int = Field(10, gt=0, description="Maximum number of epochs.")
    batch_size: int = Field(32, ge=2, description="Utterances per batch (per process under torchrun); at least 2.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of the trainable part.")
    encoder_lr: float = Field(2e-5, gt=0, description="Learning rate of an unfrozen encoder.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    label_smoothing: float = Field(0.05, ge=0, lt=1, description="Label smoothing of both cross-entropies.")
    class_weights: Literal["none", "inverse", "sqrt"] = Field(
        "sqrt",
        description="Loss class weights from train label counts: none, inverse frequency, or its square root.",
    )
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this value (0 turns it off).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps with linear warm-up before cosine decay.")
    patience: int = Field(4, ge=0, description="Stop after this many epochs without a better dev F1 (0: never).")
    seed: int = Field(42, description="Random seed; CPU runs with the same seed repeat exactly.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision on CUDA; auto is bf16 where supported, else fp16; CPU is fp32."
    )
    workers: int = Field(2, ge=0, description="DataLoader worker processes.")
    checkpoint_dir: Path | None = Field(None, description="Also keep last.pt here (SageMaker: /opt/ml/checkpoints).")
    checkpoint_interval_s: float = Field(
        600.0,
        ge=0,
        description="Also save last.pt (resumable) every this many seconds, mid-epoch too; 0 saves at epoch ends only.",
    )
    dist_timeout_s: float = Field(
        3600.0, gt=0, description="torchrun: how long a process may wait for the others before the run fails."
    )
    tensorboard_dir: Path | None = Field(None, description="TensorBoard folder; default RUN_DIR/tensorboard.")


class RemoteSettings(_Section):
    """SageMaker training jobs (`train --remote`) and `logs`."""

    instance_type: str = Field("ml.g5.xlarge", description="SageMaker instance type.")
    instance_count: int = Field(1, gt=0, description="Number of instances.")
    max_run: int = Field(86400, gt=0, description="Stopping condition: maximum run time in seconds.")
    spot: bool = Field(False, description="Use managed spot training.")
    max_wait: int | None = Field(None, gt=0, description="Spot: maximum wait in seconds (>= max_run).")
    role: str | None = Field(None, description="IAM role ARN the job runs as.")
    bucket: str | None = Field(None, description="S3 bucket for data, code, checkpoints and outputs.")
    prefix: str = Field("meldctl", description="Key prefix inside the bucket.")
    region: str | None = Field(None, description="AWS region (else the AWS configuration's).")
    image: str | None = Field(None, description="Training image URI; default the AWS PyTorch image for the region.")
    data: str | None = Field(None, description="s3:// prefix of the prepared data, or a local folder to upload.")
    wait: bool = Field(True, description="Follow the job until it ends.")
    network_isolation: bool = Field(
        False, description="Run the job without network access (needs an image with meldctl and its weights)."
    )
    checkpoint_dir: str = Field("/opt/ml/checkpoints", description="Checkpoint folder inside the job.")
    tensorboard_dir: str = Field("/opt/ml/output/tensorboard", description="TensorBoard folder inside the job.")


class ServeSettings(_Section):
    """`meldctl serve`: the device, request limits, batching, and the S3 prefixes it may read."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available.")
    max_upload_mb: float = Field(100.0, gt=0, description="Largest clip accepted, in MB (413 above).")
    max_batch: int | None = Field(
        None, ge=1, le=512, description="Most requests in one forward (unset: 8 on a GPU, 1 on the CPU)."
    )
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a decoded request may wait for others being decoded.")
    workers: int = Field(0, ge=0, le=64, description="Threads decoding clips (0: one per core, 2 to 8).")
    timeout_s: float = Field(60.0, gt=0, description="Time limit of one request in seconds, upload included (504).")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Time a connection has to send a request's headers before it is closed."
    )
    max_pending: int = Field(64, ge=1, description="Requests in progress at once (503 above).")
    allow_s3: CommaList = Field(
        [],
        description="BUCKET or BUCKET/PREFIX that clip_s3 and video_s3 may read (comma-separated); none: refused.",
    )
    max_video_mb: float = Field(1024.0, gt=0, description="Largest video /analyze accepts, in MB (413 above).")
    max_video_minutes: float = Field(30.0, gt=0, description="Longest video /analyze accepts, in minutes (422 above).")

    _split_allow_s3 = field_validator("allow_s3", mode="before")(split_commas)

    @field_validator("allow_s3")
    @classmethod
    def _bucket_prefixes(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            plain = entry.strip().removeprefix("s3://")
            bucket = plain.split("/", 1)[0]
            if not _BUCKET.fullmatch(bucket):
                raise ValueError(f"{entry!r} is not BUCKET or BUCKET/PREFIX (an S3 bucket name, then a key prefix)")
            out.append(plain)
        return out


class Settings(BaseSettings):
    """All settings. Build it with `load_settings()`, never directly."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    remote: RemoteSettings = RemoteSettings()
    serve: ServeSettings = ServeSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):  # noqa: ANN001
        # Layers are merged by `load_settings`, which knows where each value came from.
        return (init_settings,)


SECTIONS: dict[str, type[_Section]] = {
    "data": DataSettings,
    "model": ModelSettings,
    "train": TrainSettings,
    "remote": RemoteSettings,
    "serve": ServeSettings,
}


Source = Literal["default", "toml", "env", "job", "flag"]


@dataclass(frozen=True)
class SettingRow:
    """One resolved setting, for `config show` and the docs."""

    section: str
    key: str
    value: Any
    source: Source
    description: str

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}__{self.key.upper()}"


@dataclass(frozen=True)
class _Layers:
    toml: dict[str, Any]
    toml_path: Path | None
    env: dict[str, Any]
    job: dict[str, Any]
    flags: dict[str, Any]

    def source_of(self, section: str, key: str) -> Source:
        for name, layer in (("flag", self.flags), ("job", self.job), ("env", self.env), ("toml", self.toml)):
            if key in (layer.get(section) or {}):
                return name  # type: ignore[return-value]
        return "default"

    def describe(self, section: str, key: str) -> str:
        source = self.source_of(section, key)
        if source == "env":
            return f"environment variable {ENV_PREFIX}{section.upper()}__{key.upper()}"
        if source == "toml":
            return f"{self.toml_path} [{section}] {_shown(key)}"
        if source == "job":
            return f"the SageMaker job (hyperparameter {section}__{key}, or its folders)"
        if source == "flag":
            return "command-line flag"
        return "default"


def _read_toml(path: Path | None) -> tuple[dict[str, Any], Path | None]:
    if path is None:
        if not DEFAULT_CONFIG_FILE.is_file():
            return {}, None
        path = DEFAULT_CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="meldctl config init writes one")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    for section, body in data.items():
        if section not in SECTIONS:
            allowed = ", ".join(SECTIONS)
            raise ConfigError(f"{path}: unknown section [{_shown(section)}]; allowed sections are {allowed}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {section} must be a [{section}] table, not a value")
    return data, path


def _shown(name: str) -> str:
    """A name from a file as the one line of an error shows it: quoted and escaped when it is not printable."""
    return name if name.isprintable() else repr(name)


def _read_env() -> dict[str, Any]:
    try:
        env = EnvSettingsSource(Settings)()
    except SettingsError as exc:  # a whole section (MELDCTL_TRAIN) whose value is not JSON
        found = re.search(r'field "(\w+)"', str(exc))
        raise _section_variable(found.group(1) if found else "?") from None
    for section, value in env.items():
        if not isinstance(value, dict):
            raise _section_variable(section)
    return env


def _section_variable(section: str) -> ConfigError:
    name = f"{ENV_PREFIX}{section.upper()}"
    return ConfigError(
        f"environment variable {name} must hold a JSON object of [{section}] settings",
        hint=f"set one setting with {name}__KEY=value, or unset {name}",
    )


Overrides = Mapping[str, Mapping[str, Any]]


def _layers(config_path: Path | None, overrides: Overrides | None, job: Overrides | None) -> _Layers:
    toml, toml_path = _read_toml(config_path)
    flags = {s: {k: v for k, v in body.items() if v is not None} for s, body in (overrides or {}).items()}
    jobs = {s: dict(body) for s, body in (job or {}).items()}
    return _Layers(toml=toml, toml_path=toml_path, env=_read_env(), job=jobs, flags=flags)


def _merge(layers: _Layers) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in (layers.toml, layers.env, layers.job, layers.flags):
        for section, body in layer.items():
            merged.setdefault(section, {}).update(body)
    return merged


def _explain(exc: ValidationError, layers: _Layers) -> ConfigError:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    if len(loc) == 1 and loc[0] not in SECTIONS:
        return ConfigError(f"unknown settings section {loc[0]!r}; allowed sections are {', '.join(SECTIONS)}")
    section, key = loc[0], loc[1] if len(loc) > 1 else ""
    if not key:  # a rule across several keys of the section
        return ConfigError(f"[{section}] settings do not fit together: {error['msg'].removeprefix('Value error, ')}")
    where = layers.describe(section, key)
    if error["type"] == "extra_forbidden":
        known = ", ".join(SECTIONS[section].model_fields)
        return ConfigError(f"unknown setting {section}.{_shown(key)} (from {where}); keys in [{section}] are: {known}")
    field = SECTIONS[section].model_fields.get(key)
    allowed = f" ({field.description})" if field is not None and field.description else ""
    return ConfigError(f"{section}.{key} = {error.get('input')!r} (from {where}): {error['msg']}{allowed}")


def load_settings(
    config_path: Path | None = None, overrides: Overrides | None = None, *, job: Overrides | None = None
) -> Settings:
    """Resolve the settings.

    Args:
        config_path: A TOML file; None reads `./meldctl.toml` when it exists.
        overrides: Command-line values as `{section: {key: value}}`; None values are dropped.
        job: Inside a SageMaker job, its hyperparameters and folders (`SageMakerJob.settings_layer()`): above
            the environment and the TOML file, below command-line flags.

    Raises:
        ConfigError: a malformed TOML file, an unknown key or a value of the wrong type.
    """
    layers = _layers(config_path, overrides, job)
    try:
        return Settings(**_merge(layers))
    except ValidationError as exc:
        raise _explain(exc, layers) from None


def describe_settings(config_path: Path | None = None, overrides: Overrides | None = None) -> list[SettingRow]:
    """Every resolved setting with the layer it came from."""
    layers = _layers(config_path, overrides, None)
    try:
        settings = Settings(**_merge(layers))
    except ValidationError as exc:
        raise _explain(exc, layers) from None
    return [
        SettingRow(section, key, getattr(getattr(settings, section), key), layers.source_of(section, key), desc)
        for section, key, desc in iter_fields()
    ]


def iter_fields() -> Iterator[tuple[str, str, str]]:
    """(section, key, description) for every setting, in declaration order."""
    for section, model in SECTIONS.items():
        for key, field in model.model_fields.items():
            yield section, key, field.description or ""


def to_plain(settings: Settings) -> dict[str, dict[str, Any]]:
    """The settings as JSON/TOML-ready dicts (paths as strings, None kept)."""
    return settings.model_dump(mode="json")


def _toml_value(value: Any) -> str:
    """One value as TOML, on one line (arrays too: they sit in a Markdown table row)."""
    import tomli_w

    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def render_toml(settings: Settings | None = None, *, commented: bool = True) -> str:
    """A TOML document of the settings; with `commented`, each key carries its description.

    Keys whose value is None cannot be written in TOML; they are shown commented out.
    """
    plain = to_plain(settings or Settings())
    lines = (
        ["# meldctl settings. Precedence: flags > MELDCTL_* environment > this file > defaults."] if commented else []
    )
    for section, model in SECTIONS.items():
        lines += ["", f"[{section}]"]
        for key, field in model.model_fields.items():
            value = plain[section][key]
            if commented and field.description:
                lines.append(f"# {field.description}")
            lines.append(f'# {key} = ""' if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def settings_markdown() -> str:
    """The table of docs/configuration.md: every setting, default, env name and TOML key."""
    defaults = to_plain(Settings())
    out = []
    for section, model in SECTIONS.items():
        out += [
            f"### [{section}]",
            "",
            "| TOML key | default | environment variable | meaning |",
            "|---|---|---|---|",
        ]
        for key, field in model.model_fields.items():
            value = defaults[section][key]
            shown = "(unset)" if value is None else f"`{_toml_value(value)}`"
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            out.append(f"| `{section}.{key}` | {shown} | `{env}` | {field.description} |")
        out.append("")
    return "\n".join(out)
