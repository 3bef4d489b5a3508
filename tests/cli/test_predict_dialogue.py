"""`meldctl predict --dialogue FILE` and `--context`: conversations through the CLI, with a real checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dialogues import CUES, REPLY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.data.dialogue import read_dialogue_file
from meldctl.errors import MeldError

runner = CliRunner()
pytestmark = pytest.mark.slow


def _scene(path: Path) -> list[dict]:
    """Three conversations of cue + reply, one per emotion, interleaved in the file (grouped by `dialogue`)."""
    rows = []
    for i, (emotion, cues) in enumerate(sorted(CUES.items())):
        rows.append({"dialogue": f"d{i}", "speaker": "Monica", "text": cues[0], "emotion": emotion})
    for i, (emotion, _) in enumerate(sorted(CUES.items())):
        rows.append({"dialogue": f"d{i}", "speaker": "Ross", "text": REPLY, "emotion": emotion})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def test_dialogue_file_answers_each_row_in_its_conversation(dialogue_models: dict, tmp_path: Path) -> None:
    rows = _scene(tmp_path / "scene.jsonl")
    ckpt = str(dialogue_models["context"])
    result = runner.invoke(app, ["predict", "--dialogue", str(tmp_path / "scene.jsonl"), "--ckpt", ckpt, "--json"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert [a["text"] for a in answers] == [r["text"] for r in rows]  # input order, one per row
    assert [a["dialogue"] for a in answers] == [r["dialogue"] for r in rows]
    assert [a["speaker"] for a in answers] == [r["speaker"] for r in rows]
    right = sum(a["top_emotion"] == r["emotion"] for a, r in zip(answers, rows, strict=True))
    assert right >= len(rows) - 1  # a small model: allow it one miss
    alone = runner.invoke(
        app, ["predict", "--dialogue", str(tmp_path / "scene.jsonl"), "--ckpt", ckpt, "--json", "--no-context"]
    )
    replies = [a["top_emotion"] for a in json.loads(alone.stdout) if a["text"] == REPLY]
    assert len(set(replies)) == 1  # alone, every "okay" is the same utterance: one answer for three emotions


def test_context_lines_give_one_clip_its_conversation(dialogue_models: dict) -> None:
    ckpt = str(dialogue_models["context"])
    answers = {}
    for emotion, cues in CUES.items():
        result = runner.invoke(
            app, ["predict", "--text", REPLY, "--context", f"Monica: {cues[1]}", "--ckpt", ckpt, "--json"]
        )
        assert result.exit_code == 0, result.output
        answers[emotion] = json.loads(result.stdout)["top_emotion"]
    # One "okay", three answers: each follows its context line (allow the small model one miss).
    assert sum(answers[e] == e for e in CUES) >= len(CUES) - 1


def test_csv_dialogue_and_bad_rows(dialogue_models: dict, tmp_path: Path) -> None:
    table = tmp_path / "scene.csv"
    table.write_text(f"speaker,text,clip\nMonica,{CUES['joy'][0]},\nRoss,{REPLY},missing.mp4\n", encoding="utf-8")
    result = runner.invoke(
        app, ["predict", "--dialogue", str(table), "--ckpt", str(dialogue_models["context"]), "--json"]
    )
    assert result.exit_code == 1  # the row whose clip does not exist
    assert "row 2" in result.output and "Traceback" not in result.output
    assert [a["text"] for a in json.loads(result.stdout)] == [CUES["joy"][0]]
    bad = tmp_path / "bad.csv"
    bad.write_text("speaker,line\nMonica,hi\n", encoding="utf-8")
    result = runner.invoke(app, ["predict", "--dialogue", str(bad), "--ckpt", str(dialogue_models["context"])])
    assert result.exit_code != 0 and "no 'text' column" in result.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.sampled_from(["scene.jsonl", "scene.csv", "scene.txt"]))
def test_any_dialogue_file_reads_or_fails_in_one_line(tmp_path: Path, data: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        lines = read_dialogue_file(path)
    except MeldError as exc:
        assert "\n" not in exc.message
        return
    assert lines and all(line.text for line in lines)
    assert all(line.clip is None or line.clip.parent == tmp_path or tmp_path in line.clip.parents for line in lines)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.fixed_dictionaries(
            {"text": st.text(min_size=1, max_size=30).filter(str.strip)},
            optional={"speaker": st.one_of(st.none(), st.text(max_size=10)), "dialogue": st.text(max_size=5)},
        ),
        min_size=1,
        max_size=12,
    )
)
def test_jsonl_rows_round_trip(tmp_path: Path, rows: list[dict]) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lines = read_dialogue_file(path)
    assert [line.text for line in lines] == [r["text"].strip() for r in rows]
    assert [line.speaker for line in lines] == [(r.get("speaker") or "").strip() or None for r in rows]


def test_eval_no_context_is_the_ablation_from_one_checkpoint(dialogue_models: dict, tmp_path: Path) -> None:
    base = ["eval", str(dialogue_models["context"]), "--data-dir", str(dialogue_models["data"]), "--json"]
    with_context = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    alone = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--no-context"])
    assert with_context.exit_code == 0 and alone.exit_code == 0, with_context.output + alone.output
    a, b = json.loads(with_context.stdout), json.loads(alone.stdout)
    assert a["context"]["used"] and not b["context"]["used"]
    assert a["emotion"]["accuracy"] > b["emotion"]["accuracy"] + 0.15
    table = runner.invoke(app, [*base[:-1], "--out", str(tmp_path / "c"), "--no-context"])
    assert "without context (--no-context)" in " ".join(table.output.split())  # the title may wrap
