"""Dialogue context end to end: a model with context learns what only the line before says; ablated, it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dialogues import REPLY, write_dialogue_data
from helpers import small_settings

from meldctl.data.dialogue import dialogue_groups
from meldctl.data.manifest import read_manifest
from meldctl.evaluation import evaluate_checkpoint
from meldctl.inference import Predictor
from meldctl.training.trainer import run_training

pytestmark = pytest.mark.slow


def _train(data_dir: Path, tiny_bert: Path, run_dir: Path, past: int) -> Path:
    settings = small_settings(
        data_dir,
        tiny_bert,
        model={"modalities": ["text"], "context_past": past, "dropout": 0.0},
        train={"epochs": 25, "batch_size": 16, "lr": 3e-3, "patience": 0, "seed": 3},
    )
    result = run_training(settings.data, settings.model, settings.train, run_dir=run_dir)
    assert result.best_path is not None
    return result.best_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("context")
    data_dir = write_dialogue_data(root / "data")
    return {
        "data": data_dir,
        "context": _train(data_dir, tiny_bert, root / "with", past=1),
        "alone": _train(data_dir, tiny_bert, root / "without", past=0),
    }


def _reply_accuracy(predictor: Predictor, data_dir: Path, *, context: bool) -> float:
    rows = read_manifest(data_dir, "test")
    right = total = 0
    for group in dialogue_groups(rows):
        turns = [rows[i] for i in group]
        inputs = [predictor.prepare(None, r.text) for r in turns]
        answers = predictor.run_dialogue(inputs, [r.speaker for r in turns], context=context)
        for row, answer in zip(turns, answers, strict=True):
            if row.text == REPLY:
                total += 1
                right += answer.top_emotion == row.emotion
    return right / total


def test_context_learns_what_only_the_previous_line_says(trained: dict[str, Path]) -> None:
    predictor = Predictor.from_path(trained["context"], "cpu")
    assert predictor.uses_context
    assert _reply_accuracy(predictor, trained["data"], context=True) >= 0.9
    # The same weights with every utterance alone: a reply is any of three emotions.
    assert _reply_accuracy(predictor, trained["data"], context=False) <= 0.6


def test_a_model_without_context_cannot_learn_the_replies(trained: dict[str, Path]) -> None:
    predictor = Predictor.from_path(trained["alone"], "cpu")
    assert not predictor.uses_context
    assert _reply_accuracy(predictor, trained["data"], context=True) <= 0.6


def test_eval_reports_context_and_ablates_it(trained: dict[str, Path], tmp_path: Path) -> None:
    with_context = evaluate_checkpoint(trained["context"], trained["data"], "test", out_dir=tmp_path / "a", device="cpu")
    alone = evaluate_checkpoint(
        trained["context"], trained["data"], "test", out_dir=tmp_path / "b", device="cpu", context=False
    )
    assert with_context.report["context"] == {"past": 1, "future": 0, "speakers": True, "used": True}
    assert alone.report["context"]["used"] is False
    # Cues are right either way; replies only with context: about 1.0 against about 2/3 of all rows.
    assert with_context.report["emotion"]["accuracy"] >= 0.95
    assert alone.report["emotion"]["accuracy"] <= 0.8


def test_checkpoint_without_context_is_scored_as_before(trained: dict[str, Path], tmp_path: Path) -> None:
    report = evaluate_checkpoint(trained["alone"], trained["data"], "test", out_dir=tmp_path, device="cpu").report
    assert report["context"] == {"past": 0, "future": 0, "speakers": True, "used": False}
    predictor = Predictor.from_path(trained["alone"], "cpu")
    one = predictor.run([predictor.prepare(None, "okay")])[0]
    placed = predictor.run_dialogue([predictor.prepare(None, "i am so sad"), predictor.prepare(None, "okay")], [None, None])
    assert torch.allclose(torch.tensor(list(one.emotion.values())), torch.tensor(list(placed[1].emotion.values())))
