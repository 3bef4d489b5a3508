from __future__ import annotations

import json
from pathlib import Path

import pytest

from meldctl.errors import ConfigError, MeldError
from meldctl.settings import Settings, load_settings
from meldctl.training.sagemaker_env import SageMakerJob, detect


def job_settings(job: SageMakerJob) -> Settings:
    """The settings inside the job, resolved once with its layer (as `meldctl train` does)."""
    job.prepare_data()
    return load_settings(job=job.settings_layer())


def job_env(root: Path, **extra: str) -> dict[str, str]:
    """The variables the SageMaker SDK's driver sets, with /opt/ml moved under `root`."""
    (root / "input" / "data" / "data" / "manifest").mkdir(parents=True)
    (root / "input" / "data" / "code").mkdir(parents=True)
    env = {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_CHECKPOINT_DIR": str(root / "checkpoints"),
        "SM_TENSORBOARD_DIR": str(root / "output" / "tensorboard"),
        "SM_CHANNELS": json.dumps(["data", "code", "sm_drivers"]),
        "SM_CHANNEL_DATA": str(root / "input" / "data" / "data"),
        "SM_CHANNEL_CODE": str(root / "input" / "data" / "code"),
        "SM_CHANNEL_SM_DRIVERS": str(root / "input" / "data" / "sm_drivers"),
        "SM_HPS": json.dumps({}),
    }
    env.update(extra)
    return env


def test_outside_a_job_there_is_none() -> None:
    assert detect({"HOME": "/root", "PATH": "/usr/bin"}) is None


def test_detect_reads_paths_channels_and_hyperparameters(tmp_path: Path) -> None:
    env = job_env(tmp_path, SM_HPS=json.dumps({"batch-size": 16, "train.lr": "0.0005"}))
    job = detect(env)
    assert job is not None
    assert job.model_dir == tmp_path / "model"
    assert job.checkpoint_dir == tmp_path / "checkpoints"
    assert job.tensorboard_dir == tmp_path / "output" / "tensorboard"
    assert job.output_dir == tmp_path / "output"
    assert set(job.channels) == {"data"}  # the SDK's code and driver channels are not data
    assert job.data_dir == tmp_path / "input" / "data" / "data"
    assert job.hyperparameters == {"batch-size": "16", "train.lr": "0.0005"}


def test_checkpoint_and_tensorboard_default_to_the_settings_paths(tmp_path: Path) -> None:
    env = job_env(tmp_path)
    del env["SM_CHECKPOINT_DIR"], env["SM_TENSORBOARD_DIR"]
    job = detect(env)
    assert job is not None
    assert job.checkpoint_dir == Path("/opt/ml/checkpoints")
    assert job.tensorboard_dir == Path("/opt/ml/output/tensorboard")
    job = detect({**env, "MELDCTL_REMOTE__CHECKPOINT_DIR": "/opt/ml/ckpt"})
    assert job is not None and job.checkpoint_dir == Path("/opt/ml/ckpt")


def test_the_layer_maps_hyperparameters_and_job_folders(tmp_path: Path) -> None:
    hps = {"train__batch_size": "8", "text-model": "prajjwal1/bert-tiny", "train.lr": "0.01", "epochs": "3",
           "model__modalities": "text,audio", "sagemaker_program": "x.py", "data__cache": False}  # fmt: skip
    job = detect(job_env(tmp_path, SM_HPS=json.dumps(hps)))
    assert job is not None
    settings = job_settings(job)
    assert isinstance(settings, Settings)
    assert settings.train.batch_size == 8 and settings.train.epochs == 3 and settings.train.lr == 0.01
    assert settings.model.text_model == "prajjwal1/bert-tiny"
    assert settings.model.modalities == ("text", "audio")
    assert settings.data.cache is False
    assert settings.data.data_dir == tmp_path / "input" / "data" / "data"
    assert settings.train.checkpoint_dir == tmp_path / "checkpoints"
    assert settings.train.tensorboard_dir == tmp_path / "output" / "tensorboard"
    assert settings.train.run_dir is not None and tmp_path in settings.train.run_dir.parents


def test_sdk_typed_values(tmp_path: Path) -> None:
    hps = {"train__batch_size": 4, "model__freeze_text": False, "model__dropout": 0.1, "data__splits": "train,dev"}
    job = detect(job_env(tmp_path, SM_HPS=json.dumps(hps)))
    assert job is not None
    settings = job_settings(job)
    assert settings.train.batch_size == 4
    assert settings.model.freeze_text is False
    assert settings.model.dropout == 0.1 and settings.data.splits == ["train", "dev"]


def test_hyperparameters_sit_between_the_environment_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = detect(job_env(tmp_path, SM_HPS=json.dumps({"train__epochs": 7, "train__seed": 3})))
    assert job is not None
    monkeypatch.setenv("MELDCTL_TRAIN__EPOCHS", "2")
    monkeypatch.setenv("MELDCTL_TRAIN__PATIENCE", "9")
    settings = load_settings(overrides={"train": {"seed": 5}}, job=job.settings_layer())
    assert settings.train.epochs == 7 and settings.train.patience == 9 and settings.train.seed == 5


@pytest.mark.parametrize(
    ("hps", "named"), [({"batch-size": "big"}, "batch-size"), ({"learning-rat": "1"}, "learning-rat")]
)
def test_a_bad_hyperparameter_is_named(tmp_path: Path, hps: dict[str, str], named: str) -> None:
    job = detect(job_env(tmp_path, SM_HPS=json.dumps(hps)))
    assert job is not None
    with pytest.raises(ConfigError) as caught:
        job.settings_layer()
    assert named in caught.value.message


def test_hyperparameters_from_the_config_file(tmp_path: Path) -> None:
    env = job_env(tmp_path)
    del env["SM_HPS"]  # a bare container started by SageMaker: no SDK driver wrote SM_HPS
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"train__epochs": "2"}))
    job = detect(env)
    assert job is not None and job.hyperparameters == {"train__epochs": "2"}


def test_one_channel_per_split_is_combined(tmp_path: Path) -> None:
    channels = {}
    for split in ("train", "dev"):
        folder = tmp_path / "input" / "data" / split
        (folder / "manifest").mkdir(parents=True)
        (folder / "manifest" / f"{split}.jsonl").write_text(f"{split}\n")
        (folder / "audio" / split).mkdir(parents=True)
        (folder / "audio" / split / "a.wav").write_bytes(b"RIFF")
        channels[f"SM_CHANNEL_{split.upper()}"] = str(folder)
    env = {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DIR": str(tmp_path / "output"), **channels}
    job = detect(env)
    assert job is not None
    settings = job_settings(job)
    data = settings.data.data_dir
    assert (data / "manifest" / "train.jsonl").read_text() == "train\n"
    assert (data / "manifest" / "dev.jsonl").read_text() == "dev\n"
    assert (data / "audio" / "dev" / "a.wav").read_bytes() == b"RIFF"


def test_weights_channels_replace_the_encoder_names(tmp_path: Path) -> None:
    env = job_env(tmp_path)
    text = tmp_path / "input" / "data" / "text_model"
    text.mkdir(parents=True)
    (text / "config.json").write_text("{}")
    video = tmp_path / "input" / "data" / "weights"
    video.mkdir(parents=True)
    (video / "r3d_18.pth").write_bytes(b"w")
    env.update({"SM_CHANNEL_TEXT_MODEL": str(text), "SM_CHANNEL_WEIGHTS": str(video), "SM_CHANNELS": "[]"})
    job = detect(env)
    assert job is not None and job.data_dir == tmp_path / "input" / "data" / "data"
    settings = job_settings(job)
    assert settings.model.text_model == str(text)
    assert settings.model.video_weights == str(video / "r3d_18.pth")


def test_resume_from_the_newest_last_checkpoint(tmp_path: Path) -> None:
    job = detect(job_env(tmp_path))
    assert job is not None
    assert job.resume_from() is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"b")
    assert job.resume_from() is None  # best.pt carries no training state
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"l")
    assert job.resume_from() == tmp_path / "checkpoints" / "last.pt"


def test_export_copies_model_report_and_settings(tmp_path: Path) -> None:
    job = detect(job_env(tmp_path / "ml"))
    assert job is not None
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    for name in ("best.pt", "last.pt", "settings.toml", "eval/report.json", "eval/confusion_emotion.png"):
        (run / name).write_bytes(name.encode())
    job.export(run)
    model = tmp_path / "ml" / "model"
    assert (model / "best.pt").read_bytes() == b"best.pt"
    assert (model / "settings.toml").is_file() and (model / "eval" / "report.json").is_file()
    assert (model / "eval" / "confusion_emotion.png").is_file()
    assert not (model / "last.pt").exists()  # the resume state stays in the checkpoint folder


def test_export_without_best_fails_and_other_ranks_do_nothing(tmp_path: Path) -> None:
    job = detect(job_env(tmp_path / "ml"))
    assert job is not None
    with pytest.raises(MeldError):
        job.export(tmp_path / "empty-run")
    other = SageMakerJob(**{**job.__dict__, "rank": 1})
    assert other.export(tmp_path / "empty-run") == []


def test_fail_writes_the_reason(tmp_path: Path) -> None:
    job = detect(job_env(tmp_path))
    assert job is not None
    job.fail("CUDA out of memory " + "x" * 5000)
    text = (tmp_path / "output" / "failure").read_text()
    assert text.startswith("CUDA out of memory") and len(text) <= 1025


# --- a job that cannot train writes why, for SageMaker's FailureReason (the contract test runs a whole job) ---


@pytest.mark.parametrize(
    ("hps", "reason"),
    [
        ({"model__modalities": "text", "model__text_model": "minilm"}, "manifest"),  # the data channel is empty
        ({"train__epochs": "many"}, "hyperparameter train__epochs = 'many'"),
    ],
)
def test_a_failing_job_writes_the_failure_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hps: dict[str, str], reason: str
) -> None:
    from typer.testing import CliRunner

    from meldctl.cli import app

    root = tmp_path / "ml"
    for name, value in job_env(root, SM_HPS=json.dumps(hps)).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert reason in (root / "output" / "failure").read_text()
