from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meldctl.errors import ConfigError
from meldctl.hyperparameters import LOCAL_ONLY, from_hyperparameters, hyperparameter_target, to_hyperparameters
from meldctl.settings import load_settings, to_plain

_READ_BACK = """
import json
from meldctl.settings import load_settings, to_plain
from meldctl.training.sagemaker_env import detect

job = detect()
print(json.dumps(to_plain(load_settings(job=job.settings_layer()))))
"""


def sdk_set_env(tmp_path: Path, hyperparameters: dict[str, str], channels: list[str]) -> Path:
    """The env file the SageMaker SDK's own `set_env` (container_drivers/scripts/environment.py) writes."""
    import sagemaker.train.container_drivers as drivers

    scripts = Path(drivers.__file__).parent / "scripts"
    resources = {"current_host": "algo-1", "current_instance_type": "ml.m5.xlarge", "hosts": ["algo-1"],
                 "network_interface_name": "eth0"}  # fmt: skip
    config = {"resources": resources, "channels": {c: {"TrainingInputMode": "File"} for c in channels},
              "hyperparameters": hyperparameters}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    env_file = tmp_path / "sm_training.env"
    code = (
        f"import json, sys; sys.path.insert(0, {str(scripts)!r}); import environment; "
        f"c = json.load(open({str(tmp_path / 'config.json')!r})); "
        f"environment.set_env(c['resources'], c['channels'], c['hyperparameters'], output_file={str(env_file)!r})"
    )
    env = {"TRAINING_JOB_NAME": "meldctl-x-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return env_file


def test_every_setting_travels_through_the_sdk_driver_and_back(tmp_path: Path) -> None:
    settings = load_settings(overrides={
        "data": {"splits": "train,dev", "cache": False},
        "model": {"modalities": "text,audio", "text_model": "org/some-encoder", "dropout": 0.25},
        "train": {"lr": 5e-4, "encoder_lr": 1e-5, "batch_size": 16, "class_weights": "none", "device": "cpu"},
    })  # fmt: skip
    hyperparameters = to_hyperparameters(settings)
    env_file = sdk_set_env(tmp_path, hyperparameters, ["data"])
    # sm_train.sh sources the file under `set -e`: one invalid name ends the job here.
    command = f'set -e; source {env_file}; exec {sys.executable} -c "$READ_BACK"'
    done = subprocess.run(["bash", "-c", command], env={"READ_BACK": _READ_BACK, "PATH": "/usr/bin:/bin",
                          "HOME": str(tmp_path)}, capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    back, sent = json.loads(done.stdout), to_plain(settings)
    for section in ("data", "model", "train"):
        for key, value in sent[section].items():
            if key not in LOCAL_ONLY.get(section, ()) and value is not None:
                assert back[section][key] == value, (section, key)


@pytest.mark.parametrize(
    ("model", "says"),
    [({"text_model": "/data/it's/bert"}, "single quote"), ({"text_model": "1e5"}, "100000.0")],
)
def test_values_the_driver_would_break_or_change_are_refused(model: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        to_hyperparameters(load_settings(overrides={"model": model}))
    assert says in caught.value.message and "model__text_model" in caught.value.message


def test_names_in_every_accepted_form() -> None:
    assert hyperparameter_target("train__lr") == ("train", "lr")
    assert hyperparameter_target("train.lr") == ("train", "lr")
    assert hyperparameter_target("batch-size") == ("train", "batch_size")
    assert hyperparameter_target("workers") == ("train", "workers")  # unqualified: train, then model, then data
    assert hyperparameter_target("text-model") == ("model", "text_model")
    assert hyperparameter_target("splits") == ("data", "splits")
    assert hyperparameter_target("sagemaker_submit_directory") is None
    with pytest.raises(ConfigError, match="unknown hyperparameter 'train__lrr'"):
        hyperparameter_target("train__lrr")


def test_typed_values_from_the_driver_read_as_settings() -> None:
    layer = from_hyperparameters({"train__epochs": 3, "data__cache": False, "model__modalities": "text"})
    assert layer == {"train": {"epochs": 3}, "data": {"cache": False}, "model": {"modalities": ("text",)}}
    with pytest.raises(ConfigError, match="hyperparameter train__epochs = 'many'"):
        from_hyperparameters({"train__epochs": "many"})
