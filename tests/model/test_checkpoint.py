from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from meldctl.errors import CheckpointError
from meldctl.model import ModelConfig, PreprocessConfig, build_model
from meldctl.model.checkpoint import FORMAT_VERSION, load_checkpoint, read_checkpoint, save_checkpoint
from meldctl.model.text import load_tokenizer, tokenizer_to_files


@pytest.fixture
def saved(tmp_path: Path, tiny_bert: Path) -> tuple[Path, torch.nn.Module, dict]:
    torch.manual_seed(1)
    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none")).eval()
    tokenizer = load_tokenizer(str(tiny_bert))
    path = save_checkpoint(
        tmp_path / "best.pt",
        model,
        PreprocessConfig(num_frames=4),
        tokenizer_files=tokenizer_to_files(tokenizer),
        metrics={"dev_emotion_weighted_f1": 0.5},
    )
    batch = dict(tokenizer(["oh my god"], return_tensors="pt"))
    batch = {k: batch[k] for k in ("input_ids", "attention_mask")}
    batch["video"] = torch.randn(1, 3, 4, 32, 32)
    batch["audio"] = torch.randn(1, 1, 64, 40)
    return path, model, batch


def test_round_trip_gives_the_same_outputs(saved, tiny_bert: Path) -> None:
    path, model, batch = saved
    loaded = load_checkpoint(path)
    with torch.no_grad():
        expected, actual = model(batch), loaded.model(batch)
    assert torch.allclose(expected["emotion"], actual["emotion"], atol=1e-6)
    assert torch.allclose(expected["sentiment"], actual["sentiment"], atol=1e-6)
    assert loaded.preprocess.num_frames == 4
    assert loaded.metrics == {"dev_emotion_weighted_f1": 0.5}
    assert loaded.tokenizer("oh my god")["input_ids"] == load_tokenizer(str(tiny_bert))("oh my god")["input_ids"]


def test_checkpoint_loads_without_the_original_text_folder(saved, tiny_bert: Path, tmp_path: Path) -> None:
    path, model, batch = saved
    moved = tiny_bert.rename(tmp_path / "elsewhere")
    try:
        loaded = load_checkpoint(path)
        with torch.no_grad():
            assert torch.allclose(model(batch)["emotion"], loaded.model(batch)["emotion"], atol=1e-6)
    finally:
        moved.rename(tiny_bert)


def test_payload_is_plain_values_and_labels(saved) -> None:
    payload = torch.load(saved[0], weights_only=True)
    assert payload["labels"]["emotion"] == [
        "neutral",
        "surprise",
        "fear",
        "sadness",
        "joy",
        "disgust",
        "anger",
    ]
    assert payload["labels"]["sentiment"] == ["neutral", "positive", "negative"]
    assert payload["format_version"] == FORMAT_VERSION


class _Touch:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "meldctl-checkpoint", "payload": _Touch(marker)}, evil)
    with pytest.raises(CheckpointError, match="would run code"):
        load_checkpoint(evil)
    assert not marker.exists()
    with evil.open("wb") as f:  # a plain pickle, not a torch zip file
        pickle.dump(_Touch(marker), f)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_pickle_that_calls_os_system_is_called_code_not_damage(tmp_path: Path) -> None:
    """torch 2.11 words this refusal "unsupported GLOBAL posix.system" and suggests weights_only=False: the
    message must say the file would run code, not that it is damaged and would load without weights_only."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "system.pt"
    torch.save({"format": "meldctl-checkpoint", "payload": _System(f"touch {marker}")}, evil)
    with pytest.raises(CheckpointError, match="would run code") as caught:
        load_checkpoint(evil)
    assert "damaged" not in caught.value.message and "weights_only" not in caught.value.message
    assert not marker.exists()


def test_truncated_foreign_and_newer_files_are_refused(saved, tmp_path: Path) -> None:
    path = saved[0]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint|not a torch checkpoint"):
        read_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a meldctl checkpoint"):
        read_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, newer)
    with pytest.raises(CheckpointError, match="format version"):
        read_checkpoint(newer)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        read_checkpoint(text)


def test_save_is_atomic(saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, model, _ = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, PreprocessConfig())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _tampered(path: Path, tmp_path: Path, change) -> Path:  # noqa: ANN001
    payload = torch.load(path, weights_only=True)
    change(payload)
    out = tmp_path / "tampered.pt"
    torch.save(payload, out)
    return out


def _set(section: str, key: str, value):  # noqa: ANN001, ANN202
    return lambda payload: payload[section].__setitem__(key, value)


def _first_weight(name: str, value: float):  # noqa: ANN202
    return lambda payload: payload["state_dict"][name].view(-1)[:1].fill_(value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("preprocess", "num_frames", 100000), r"preprocess.num_frames = 100000"),
        (_set("preprocess", "n_mels", 100000), r"preprocess.n_mels"),
        (_set("preprocess", "std", [0.2, 0.0, 0.2]), r"preprocess.std"),
        (_set("model_config", "projection_dim", 10**7), r"model_config.projection_dim"),
        (_set("model_config", "emotions", ["joy"]), r"model_config.emotions"),
        (_set("labels", "emotion", ["a", "b", "c", "d", "e", "f", "g"]), r"label lists"),
        (_first_weight("emotion_head.weight", float("nan")), r"NaN or infinite"),
        (_first_weight("audio.mel_std", 0.0), r"zero or negative standard deviation"),
        (lambda p: p["model_config"]["text_config"].__setitem__("hidden_size", 4096), r"weight .* has shape"),
        (lambda p: p.__setitem__("tokenizer", {"tokenizer.json": "{not json", "tokenizer_config.json": "[]"}),
         r"tokenizer cannot be loaded"),
        (lambda p: p.__setitem__("tokenizer", None), r"has no tokenizer"),
        (lambda p: p["state_dict"].pop("fusion.0.weight"), r"weights do not match"),
    ],
    ids=["frames", "mels", "zero-std", "huge-projection", "labels-in-config", "labels-field", "nan-weight",
         "zero-mel-std", "text-config", "broken-tokenizer", "no-tokenizer", "missing-weight"],
)  # fmt: skip
def test_tampered_checkpoints_are_one_clear_error(saved, tmp_path: Path, change, message: str) -> None:  # noqa: ANN001
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_tampered(saved[0], tmp_path, change))


def test_an_older_format_is_refused_with_a_retrain_hint(saved, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="older meldctl") as info:
        read_checkpoint(_tampered(saved[0], tmp_path, _set_version(FORMAT_VERSION - 1)))
    assert "train it again" in info.value.hint


def _set_version(version: int):  # noqa: ANN202
    return lambda payload: payload.__setitem__("format_version", version)


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(saved, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    path, model, _ = saved
    before = path.read_bytes()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9, 1000))
    with pytest.raises(CheckpointError, match=r"no room to write best.pt .* MB free"):
        save_checkpoint(path, model, PreprocessConfig())
    assert path.read_bytes() == before
