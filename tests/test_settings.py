from __future__ import annotations

from pathlib import Path

import pytest

from meldctl.errors import ConfigError
from meldctl.settings import describe_settings, load_settings, render_toml


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_seed() -> None:
    s = load_settings()
    assert s.train.batch_size == 32
    assert s.model.text_model == "bert-base-uncased"
    assert s.model.video_weights == "kinetics400"
    assert s.remote.instance_type == "ml.g5.xlarge"
    assert s.model.modalities == ("text", "audio", "video")


def test_precedence_flag_over_env_over_toml_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "meldctl.toml", "[train]\nbatch_size = 8\nepochs = 3\n")
    assert load_settings().train.batch_size == 8
    monkeypatch.setenv("MELDCTL_TRAIN__BATCH_SIZE", "16")
    assert load_settings().train.batch_size == 16
    s = load_settings(overrides={"train": {"batch_size": 4, "lr": None}})
    assert s.train.batch_size == 4
    assert s.train.epochs == 3  # the file still counts for what no higher layer sets
    assert s.train.lr == 1e-3  # a None flag is a flag not given
    sources = {(r.section, r.key): r.source for r in describe_settings(overrides={"train": {"batch_size": 4}})}
    assert sources[("train", "batch_size")] == "flag"
    assert sources[("train", "epochs")] == "toml"
    assert sources[("train", "lr")] == "default"


def test_explicit_config_file_and_comma_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "other.toml", '[model]\nmodalities = ["video", "text"]\n')
    assert load_settings(cfg).model.modalities == ("text", "video")
    monkeypatch.setenv("MELDCTL_MODEL__MODALITIES", "audio")
    assert load_settings(cfg).model.modalities == ("audio",)


@pytest.mark.parametrize(
    ("toml", "env", "needle"),
    [
        ('[train]\nbatch_size = "big"\n', {}, "train.batch_size = 'big'"),
        ("[train]\nbatchsize = 8\n", {}, "unknown setting train.batchsize"),
        ("[trian]\nepochs = 1\n", {}, "unknown section [trian]"),
        ("[train\n", {}, "is not valid TOML"),
        ("", {"MELDCTL_TRAIN__BATCH_SIZE": "big"}, "MELDCTL_TRAIN__BATCH_SIZE"),
        ("", {"MELDCTL_MODEL__MODALITIES": "smell"}, "unknown modality 'smell'"),
        # Non-finite numbers mean nothing as settings (`lr = inf` trained on NaN losses), from any layer.
        ("[train]\ngrad_clip = inf\n", {}, "train.grad_clip = inf"),
        ("[train]\nlr = nan\n", {}, "finite number"),
        ("[model]\nmodality_dropout = nan\n", {}, "model.modality_dropout = nan"),
        ("", {"MELDCTL_TRAIN__WEIGHT_DECAY": "inf"}, "MELDCTL_TRAIN__WEIGHT_DECAY"),
        ("", {"MELDCTL_TRAIN__LR": "-inf"}, "finite number"),
        ("", {"MELDCTL_DATA__MAX_CLIP_SECONDS": "Infinity"}, "finite number"),
    ],
)
def test_bad_values_name_key_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], needle: str
) -> None:
    _write(tmp_path / "meldctl.toml", toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("key", ["lr", "encoder_lr", "weight_decay", "grad_clip", "checkpoint_interval_s"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_non_finite_flags_are_refused(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match="finite number") as info:
        load_settings(overrides={"train": {key: value}})
    assert f"train.{key}" in str(info.value) and "command-line flag" in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_rendered_toml_round_trips(tmp_path: Path) -> None:
    path = _write(tmp_path / "meldctl.toml", render_toml())
    assert load_settings(path) == load_settings(tmp_path / "meldctl.toml")
    assert "# Utterances per batch" in path.read_text()


def test_docs_list_every_setting() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for row in describe_settings():
        assert f"`{row.section}.{row.key}`" in docs, row
        assert row.env_name in docs
