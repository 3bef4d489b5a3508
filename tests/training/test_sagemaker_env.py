from __future__ import annotations

import json
from pathlib import Path

import pytest

from meldctl.errors import ConfigError, MeldError
from meldctl.settings import Settings, load_settings
from meldctl.training.sagemaker_env import SageMakerJob, detect, hyperparameter_target, hyperparameters_from_argv


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


def test_apply_maps_hyperparameters_and_job_folders(tmp_path: Path) -> None:
    hps = {"batch-size": "8", "text-model": "prajjwal1/bert-tiny", "train.lr": "0.01", "epochs": "3",
           "model.modalities": "text,audio", "sagemaker_program": "x.py", "cache": "false"}  # fmt: skip
    job = detect(job_env(tmp_path, SM_HPS=json.dumps(hps)))
    assert job is not None
    settings = job.apply(load_settings())
    assert isinstance(settings, Settings)
    assert settings.train.batch_size == 8 and settings.train.epochs == 3 and settings.train.lr == 0.01
    assert settings.model.text_model == "prajjwal1/bert-tiny"
    assert settings.model.modalities == ("text", "audio")
    assert settings.data.cache is False
    assert settings.data.data_dir == tmp_path / "input" / "data" / "data"
    assert settings.train.checkpoint_dir == tmp_path / "checkpoints"
    assert settings.train.tensorboard_dir == tmp_path / "output" / "tensorboard"
    assert settings.train.run_dir is not None and tmp_path in settings.train.run_dir.parents


def test_batch_size_with_underscore_and_sdk_typed_values(tmp_path: Path) -> None:
    job = detect(job_env(tmp_path, SM_HPS=json.dumps({"batch_size": 4, "freeze_text": False, "dropout": 0.1})))
    assert job is not None
    settings = job.apply(load_settings())
    assert settings.train.batch_size == 4
    assert settings.model.freeze_text is False
    assert settings.model.dropout == 0.1


@pytest.mark.parametrize(
    ("hps", "named"), [({"batch-size": "big"}, "batch-size"), ({"learning-rat": "1"}, "learning-rat")]
)
def test_a_bad_hyperparameter_is_named(tmp_path: Path, hps: dict[str, str], named: str) -> None:
    job = detect(job_env(tmp_path, SM_HPS=json.dumps(hps)))
    assert job is not None
    with pytest.raises(ConfigError) as caught:
        job.apply(load_settings())
    assert named in caught.value.message


def test_hyperparameters_from_the_config_file_and_from_argv(tmp_path: Path) -> None:
    env = job_env(tmp_path)
    del env["SM_HPS"]
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epochs": "2"}))
    job = detect(env)
    assert job is not None and job.hyperparameters == {"epochs": "2"}
    argv = ["--batch-size", "16", "--train.lr=0.1", "--model.freeze_text", "false", "--flag"]
    assert hyperparameters_from_argv(argv) == {"batch-size": "16", "train.lr": "0.1", "model.freeze_text": "false",
                                               "flag": "true"}  # fmt: skip


def test_unqualified_names_prefer_train_then_model_then_data() -> None:
    assert hyperparameter_target("workers") == ("train", "workers")
    assert hyperparameter_target("text-model") == ("model", "text_model")
    assert hyperparameter_target("splits") == ("data", "splits")
    assert hyperparameter_target("sagemaker_submit_directory") is None


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
    settings = job.apply(load_settings())
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
    settings = job.apply(load_settings())
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


# --- the contract end to end: `meldctl train` inside a "job" whose /opt/ml is a temporary folder ---

TEXTS = ["oh my god", "i love coffee", "no way", "that is great", "i hate this", "so sorry", "really", "wow"]
EMOTIONS = ["joy", "neutral", "surprise", "anger", "sadness", "fear", "disgust", "joy"]
SENTIMENTS = {"joy": "positive", "neutral": "neutral", "surprise": "positive"}


def text_only_data(folder: Path) -> Path:
    """A prepared folder with manifests only: enough for a text-only model."""
    from meldctl.data.manifest import ManifestRow, write_manifest

    for split in ("train", "dev", "test"):
        rows = [
            ManifestRow(split=split, dialogue_id=i // 4, utterance_id=i % 4, text=text, speaker="Ross",
                        emotion=EMOTIONS[i], sentiment=SENTIMENTS.get(EMOTIONS[i], "negative"), clip=None,
                        audio=None, duration_s=1.0, status="ok")
            for i, text in enumerate(TEXTS)
        ]  # fmt: skip
        write_manifest(folder, split, rows)
    return folder


def contract_env(root: Path, tiny_bert: Path, **hps: str) -> dict[str, str]:
    data = text_only_data(root / "input" / "data" / "training")
    hyperparameters = {"modalities": "text", "text-model": str(tiny_bert), "video-weights": "none",
                       "batch-size": "4", "workers": "0", "epochs": "1", **hps}  # fmt: skip
    return {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_CHECKPOINT_DIR": str(root / "checkpoints"),
        "SM_TENSORBOARD_DIR": str(root / "output" / "tensorboard"),
        "SM_CHANNELS": json.dumps(["training"]),
        "SM_CHANNEL_TRAINING": str(data),
        "SM_HPS": json.dumps(hyperparameters),
    }


def test_a_job_trains_exports_and_resumes(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from meldctl.cli.train_remote import run_in_job
    from meldctl.model.checkpoint import load_checkpoint, read_checkpoint

    root = tmp_path / "ml"
    for name, value in contract_env(root, tiny_bert).items():
        monkeypatch.setenv(name, value)
    assert run_in_job([]) == 0
    assert (root / "model" / "settings.toml").is_file()
    load_checkpoint(root / "model" / "best.pt")  # the model lands in SM_MODEL_DIR and loads
    assert read_checkpoint(root / "checkpoints" / "last.pt")["training"]["state"]["epoch"] == 2
    assert list((root / "output" / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (root / "output" / "failure").exists()
    assert "[meldctl] best epoch=1 " in capsys.readouterr().out  # read by the best_* metric definition

    # A retry (or a spot resumption) finds last.pt in the checkpoint folder and goes on from there.
    monkeypatch.setenv("SM_HPS", json.dumps({**json.loads(contract_env(tmp_path / "x", tiny_bert)["SM_HPS"]),
                                             "epochs": "2"}))  # fmt: skip
    assert run_in_job([]) == 0
    assert read_checkpoint(root / "checkpoints" / "last.pt")["training"]["state"]["epoch"] == 3


def test_a_failing_job_writes_the_failure_file(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meldctl.cli.train_remote import run_in_job

    root = tmp_path / "ml"
    env = contract_env(root, tiny_bert)
    empty = root / "input" / "data" / "empty"
    empty.mkdir(parents=True)
    env["SM_CHANNEL_TRAINING"] = str(empty)  # a data channel without manifests
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run_in_job([]) != 0
    failure = (root / "output" / "failure").read_text()
    assert "manifest" in failure


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path: Path, tiny_bert: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from meldctl.model.checkpoint import read_checkpoint

    root = tmp_path / "ml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELDCTL_", "SM_"))}
    env.update(contract_env(root, tiny_bert, epochs="500"), PYTHONUNBUFFERED="1", COLUMNS="200")
    process = subprocess.Popen([sys.executable, "-m", "meldctl", "train"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        seen = []
        for line in process.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "[meldctl] epoch=2 " in line:
                break
        assert any("[meldctl] epoch=2 " in line for line in seen), "".join(seen)
        process.send_signal(signal.SIGTERM)  # what SageMaker does on stop or spot interruption
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    checkpoint = read_checkpoint(root / "checkpoints" / "last.pt")
    assert checkpoint["training"]["state"]["epoch"] >= 3
