from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import small_settings

from meldctl.data.manifest import read_manifest, write_manifest
from meldctl.model.checkpoint import load_checkpoint, read_checkpoint
from meldctl.reporting import Reporter
from meldctl.settings import load_settings
from meldctl.training.trainer import run_training


class Recorder(Reporter):
    def __init__(self) -> None:
        self.progress_calls: list[tuple[str, int, int]] = []
        self.records: list[dict] = []

    def progress(self, label: str, done: int, total: int) -> None:
        self.progress_calls.append((label, done, total))

    def epoch_end(self, record: dict) -> None:
        self.records.append(record)


def _settings(data_dir: Path, tiny_bert: Path, **train):
    return small_settings(data_dir, tiny_bert, train=train)


def test_end_to_end_on_the_sample_writes_checkpoints_and_events(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    s = _settings(prepared_copy, tiny_bert)
    reporter = Recorder()
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run", reporter=reporter)
    assert result.stopped == "completed" and result.epochs_run == 2
    assert [r["epoch"] for r in reporter.records] == [1, 2]
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(result.cached) == ["audio", "text", "video"]
    loaded = load_checkpoint(result.best_path)
    assert loaded.model.config.modalities == ("text", "audio", "video")
    assert loaded.preprocess.num_frames == 4  # preprocessing travels with the checkpoint
    assert read_checkpoint(result.last_path)["training"]["state"]["epoch"] == 3
    for key in ("dev_emotion_weighted_f1", "dev_sentiment_weighted_f1", "dev_emotion_accuracy"):
        assert 0.0 <= result.best_metrics[key] <= 1.0


def test_cache_is_built_once_reused_and_invalidated(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    s = _settings(prepared_copy, tiny_bert, epochs=1)
    first = Recorder()
    a = run_training(s.data, s.model, s.train, run_dir=tmp_path / "a", reporter=first)
    built = {label for label, done, total in first.progress_calls if done < total}
    assert {"caching text features, train", "caching video features, train", "caching audio features, train"} <= built
    second = Recorder()
    b = run_training(s.data, s.model, s.train, run_dir=tmp_path / "b", reporter=second)
    assert second.progress_calls == [], "a second run must not recompute any feature"
    # Same seed, same data: the run that built the cache and the one that reused it train identically.
    assert a.history[0]["train_loss"] == pytest.approx(b.history[0]["train_loss"], rel=1e-5)
    folders = {p.name.split("-")[0]: p.name for p in (prepared_copy / "cache").iterdir()}
    changed = load_settings(
        overrides={
            **{"data": {"data_dir": prepared_copy}},
            "model": {**s.model.model_dump(), "num_frames": 2},
            "train": s.train.model_dump(),
        }
    )
    third = Recorder()
    run_training(changed.data, changed.model, changed.train, run_dir=tmp_path / "c", reporter=third)
    rebuilt = {label.split(" ")[1] for label, done, total in third.progress_calls if done < total}
    assert rebuilt == {"video"}, "only the video cache depends on the frame count"
    after = {p.name for p in (prepared_copy / "cache").iterdir()}
    assert folders["video_features"] in after and len([n for n in after if n.startswith("video")]) == 2


def test_interrupted_cache_build_keeps_its_rows(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    from meldctl.errors import Interrupted

    s = _settings(prepared_copy, tiny_bert, epochs=1)
    calls = {"n": 0}

    def stop_after_two_batches() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    s.model.modalities = ["video"]
    with pytest.raises(Interrupted):
        run_training(s.data, s.model, s.train, run_dir=tmp_path / "a", should_stop=stop_after_two_batches)
    resumed = Recorder()
    run_training(s.data, s.model, s.train, run_dir=tmp_path / "b", reporter=resumed)
    first_train = next(c for c in resumed.progress_calls if c[0] == "caching video features, train")
    assert first_train[1] >= 16, "rows computed before the interruption are kept"
    assert first_train[1] < first_train[2]


def test_model_overfits_16_utterances(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    rows = read_manifest(prepared_copy, "train")[:16]
    write_manifest(prepared_copy, "train", rows)
    write_manifest(prepared_copy, "dev", rows)  # score the training rows themselves
    s = load_settings(
        overrides={
            "data": {"data_dir": prepared_copy},
            "model": {
                "modalities": "text,audio",
                "text_model": str(tiny_bert),
                "dropout": 0.0,
                "modality_dropout": 0.0,  # nothing hidden: the training accuracy is the model's own
                "audio_seconds": 0.5,
            },
            "train": {
                "epochs": 40,
                "batch_size": 16,
                "workers": 0,
                "lr": 3e-3,
                "label_smoothing": 0.0,
                "patience": 0,
                "class_weights": "none",
                "warmup_ratio": 0.0,
            },
        }
    )
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0] * 0.2
    assert result.history[-1]["train_emotion_accuracy"] == 1.0
    assert result.best_metrics["dev_emotion_accuracy"] == 1.0


def test_resume_continues_epochs_and_optimizer_state(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    s = _settings(prepared_copy, tiny_bert, epochs=1)
    run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    saved = read_checkpoint(tmp_path / "run" / "last.pt")["training"]
    steps_after_one = saved["optimizer"]["state"][0]["step"].item()
    s.train.epochs = 3
    s.model.num_frames = 8  # ignored: a resumed run keeps its checkpoint's preprocessing
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run", resume=tmp_path / "run")
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    final = read_checkpoint(tmp_path / "run" / "last.pt")
    assert final["training"]["optimizer"]["state"][0]["step"].item() == pytest.approx(3 * steps_after_one)
    assert final["preprocess"].num_frames == 4


def test_stop_request_saves_last_and_resume_redoes_the_epoch(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    s = _settings(prepared_copy, tiny_bert, epochs=2)
    s.model.modalities = ["text"]
    run_training(s.data, s.model, s.train, run_dir=tmp_path / "warm")  # build the cache first
    batches = {"n": 0}

    def stop_in_epoch_two() -> bool:
        batches["n"] += 1
        return batches["n"] == 8  # 42 rows / 8 = 6 batches an epoch: batch 2 of epoch 2

    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run", should_stop=stop_in_epoch_two)
    assert result.stopped == "interrupted"
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert (last["training"]["state"]["epoch"], last["training"]["state"]["batches_done"]) == (2, 2)
    load_checkpoint(tmp_path / "run" / "best.pt")  # never a best.pt that does not load
    resumed = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run", resume=tmp_path / "run" / "last.pt")
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_text_only_trains_without_clips(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    for split in ("train", "dev"):
        rows = [
            dataclasses.replace(r, clip=None, audio=None, status="missing", error="no clip")
            for r in read_manifest(prepared_copy, split)
        ]
        write_manifest(prepared_copy, split, rows)
    s = _settings(prepared_copy, tiny_bert, epochs=1)
    s.model.modalities = ["text"]
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    assert result.missing == {"train": {"text": 0}, "dev": {"text": 0}}
    s.model.modalities = ["text", "audio"]  # no audio anywhere: every row answers from text and the stand-in
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run2")
    assert result.missing["train"] == {"text": 0, "audio": 42} and result.epochs_run == 1


def test_no_cache_trains_from_raw_media(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    s = _settings(prepared_copy, tiny_bert, epochs=1)
    s.data.cache = False
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    assert result.cached == [] and result.epochs_run == 1
    assert not (prepared_copy / "cache").exists()


def test_unfrozen_text_encoder_bypasses_its_cache_and_changes(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    s = _settings(prepared_copy, tiny_bert, epochs=1)
    s.model.modalities = ["text"]
    s.model.freeze_text = False
    result = run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    assert result.cached == []
    tuned = load_checkpoint(result.best_path).model.text.encoder.embeddings.word_embeddings.weight
    from transformers import AutoModel

    original = AutoModel.from_pretrained(tiny_bert).embeddings.word_embeddings.weight
    assert not torch.allclose(tuned, original)


def test_resume_after_a_stop_ends_where_an_uninterrupted_run_ends(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    """Stopped in epoch 3 of 4 and resumed (into a copy of the run folder): the same final weights, bit for bit."""
    import shutil

    s = _settings(prepared_copy, tiny_bert, epochs=4, patience=0)
    s.model.modalities = ["text", "audio"]
    whole = run_training(s.data, s.model, s.train, run_dir=tmp_path / "whole")
    batches = {"n": 0}

    def stop_early_in_epoch_three() -> bool:
        batches["n"] += 1
        return batches["n"] == 2 * 6 + 2  # 42 rows in batches of 8: 6 batches an epoch

    stopped = run_training(s.data, s.model, s.train, run_dir=tmp_path / "part", should_stop=stop_early_in_epoch_three)
    assert stopped.stopped == "interrupted" and [r["epoch"] for r in stopped.history] == [1, 2]
    shutil.copytree(tmp_path / "part", tmp_path / "moved")
    resumed = run_training(s.data, s.model, s.train, run_dir=tmp_path / "moved", resume=tmp_path / "moved")
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    final, expected = (read_checkpoint(p / "last.pt")["state_dict"] for p in (tmp_path / "moved", tmp_path / "whole"))
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final)
    assert resumed.history[-1]["train_loss"] == pytest.approx(whole.history[-1]["train_loss"], rel=1e-9)


def test_a_checkpoint_every_interval_mid_epoch(prepared_copy: Path, tiny_bert: Path, tmp_path: Path) -> None:
    s = _settings(prepared_copy, tiny_bert, epochs=1, checkpoint_interval_s=1e-9)
    s.model.modalities = ["text"]
    saves = []
    import meldctl.training.trainer as trainer

    real = trainer.save_checkpoint

    def spy(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if kwargs.get("training"):
            saves.append(kwargs["training"]["state"]["batches_done"])
        return real(path, *args, **kwargs)

    trainer.save_checkpoint = spy
    try:
        run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    finally:
        trainer.save_checkpoint = real
    assert saves == [1, 2, 3, 4, 5, 6, 0]  # after every batch (the interval is tiny), then at the epoch's end


def test_adamw_does_not_decay_biases_norms_or_stand_ins(tiny_bert: Path) -> None:
    from meldctl.model import ModelConfig, build_model
    from meldctl.settings import TrainSettings
    from meldctl.training.optim import build_optimizer

    model = build_model(ModelConfig(text_model=str(tiny_bert), video_weights="none"))
    optimizer = build_optimizer(model, TrainSettings(weight_decay=0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            no_decay = param.ndim < 2 or name.startswith("stand_ins") or "layer_weights" in name
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
    assert {names[id(p)] for g in optimizer.param_groups for p in g["params"]} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }


def test_no_checkpoint_is_written_from_non_finite_weights(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last step of epoch 2 leaves a NaN weight behind a finite loss: neither best.pt nor last.pt takes it."""
    from meldctl.errors import MeldError
    from meldctl.training import trainer

    s = _settings(prepared_copy, tiny_bert, epochs=3, patience=0)
    s.model.modalities = ["text"]
    real, steps = trainer.train_step, {"n": 0}

    def poisoning_step(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = real(model, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] == 2 * 6:  # 42 rows in batches of 8: 6 batches an epoch
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(trainer, "train_step", poisoning_step)
    with pytest.raises(MeldError, match="training diverged: the weights are no longer finite"):
        run_training(s.data, s.model, s.train, run_dir=tmp_path / "run")
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert last["training"]["state"]["epoch"] == 2  # still the end of epoch 1
    for name in ("best.pt", "last.pt"):
        weights = read_checkpoint(tmp_path / "run" / name)["state_dict"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()), name
