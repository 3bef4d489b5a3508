"""Dialogue context end to end: a model with context learns what only the line before says; ablated, it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dialogues import REPLY

from meldctl.data.dialogue import dialogue_groups
from meldctl.data.manifest import read_manifest
from meldctl.evaluation import evaluate_checkpoint
from meldctl.inference import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(dialogue_models: dict[str, Path]) -> dict[str, Path]:
    return dialogue_models


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
    with_context = evaluate_checkpoint(
        trained["context"], trained["data"], "test", out_dir=tmp_path / "a", device="cpu"
    )
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
    placed = predictor.run_dialogue(
        [predictor.prepare(None, "i am so sad"), predictor.prepare(None, "okay")], [None, None]
    )
    assert torch.allclose(torch.tensor(list(one.emotion.values())), torch.tensor(list(placed[1].emotion.values())))


def test_windows_never_cross_a_dialogue_boundary() -> None:
    from meldctl.data.dialogue import pack_dialogues
    from meldctl.model.context import DialogueContext, context_mask

    dialogue = torch.tensor([0, 0, 0, 1, 1, 2])
    position = torch.tensor([0, 1, 2, 0, 1, 0])
    mask = context_mask(dialogue, position, past=5, future=5)
    assert not (mask & (dialogue[:, None] != dialogue[None, :])).any()
    layer = DialogueContext(8, 5, 5, speakers=True).eval()
    x = torch.randn(6, 8)
    keys = {"dialogue": dialogue, "position": position, "speaker": torch.tensor([0, 1, 0, 0, 1, -1])}
    changed = x.clone()
    changed[3:] += 10  # other dialogues change: the first dialogue's outputs must not
    assert torch.equal(layer(x, keys)[:3], layer(changed, keys)[:3])
    # Batches hold whole dialogues: no dialogue is split between two batches (each fits in one).
    batches = pack_dialogues([[0, 1, 2], [3, 4], [5], [6, 7, 8, 9]], 5)
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
