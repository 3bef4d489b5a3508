"""Utterances in their conversation over real HTTP: `context` and `dialogue` on /predict and /invocations.

The served checkpoint is the synthetic dialogue model (`tests/dialogues.py`): a reply "okay" carries the
emotion of the cue before it, which only a model that sees the cue can tell.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests
from dialogues import CUES, REPLY
from serve_servers import ServeProcess, assert_error, start_serve
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.data.dialogue import dialogue_groups
from meldctl.data.manifest import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def context_server(dialogue_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ServeProcess:
    args = [str(dialogue_models["context"]), "--device", "cpu", "--max-upload-mb", "1", "--workers", "2"]
    server = start_serve(args, tmp_path_factory.mktemp("serve-dialogue"))
    yield server
    server.stop()


def _test_rows(data_dir: Path) -> tuple[list[dict], list[str]]:
    """The synthetic test dialogues as request rows (in conversation order) and each row's gold emotion."""
    rows = read_manifest(data_dir, "test")
    out, gold = [], []
    for group in dialogue_groups(rows):
        for index in group:
            row = rows[index]
            out.append({"text": row.text, "speaker": row.speaker, "dialogue": str(row.dialogue_id)})
            gold.append(row.emotion)
    return out, gold


def _reply_accuracy(rows: list[dict], gold: list[str], answers: list[dict]) -> float:
    pairs = [(g, a["top_emotion"]) for r, g, a in zip(rows, gold, answers, strict=True) if r["text"] == REPLY]
    return sum(g == got for g, got in pairs) / len(pairs)


def test_a_dialogue_gets_the_replies_right_and_no_context_does_not(
    context_server: ServeProcess, dialogue_models: dict[str, Path], tmp_path: Path
) -> None:
    rows, gold = _test_rows(dialogue_models["data"])
    answer = requests.post(context_server.url + "/predict", json={"dialogue": rows}, timeout=120)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [(a["text"], a["speaker"], a["dialogue"]) for a in got] == [
        (r["text"], r["speaker"], r["dialogue"]) for r in rows
    ]  # one object per row, in the request's order
    assert _reply_accuracy(rows, gold, got) >= 0.9
    alone = requests.post(context_server.url + "/invocations", json={"dialogue": rows, "no_context": True}, timeout=120)
    assert alone.status_code == 200, alone.text
    assert _reply_accuracy(rows, gold, alone.json()) <= 0.6  # "okay" alone is any of three emotions
    # What `meldctl predict --dialogue FILE --json` prints for the same rows.
    path = tmp_path / "dialogue.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    printed = CliRunner().invoke(
        app,
        ["predict", "--dialogue", str(path), "--ckpt", str(dialogue_models["context"]), "--json", "--device", "cpu"],
    )
    assert printed.exit_code == 0, printed.output
    for ours, theirs in zip(got, json.loads(printed.stdout), strict=True):
        assert ours.keys() == theirs.keys() and ours["top_emotion"] == theirs["top_emotion"]
        assert all(abs(ours["emotion"][k] - theirs["emotion"][k]) < 1e-5 for k in ours["emotion"])


@pytest.mark.parametrize("emotion", sorted(CUES))
def test_context_gives_okay_the_emotion_of_the_line_before(context_server: ServeProcess, emotion: str) -> None:
    cue = [{"speaker": "Rachel", "text": CUES[emotion][0]}]
    url = context_server.url + "/predict"
    in_json = requests.post(url, json={"text": REPLY, "context": cue}, timeout=60)
    assert in_json.status_code == 200, in_json.text
    assert in_json.json()["top_emotion"] == emotion and in_json.json()["text"] == REPLY
    in_form = requests.post(url, files={"text": (None, REPLY), "context": (None, json.dumps(cue))}, timeout=60)
    assert in_form.status_code == 200, in_form.text
    assert in_form.json()["top_emotion"] == emotion
    invoked = requests.post(context_server.url + "/invocations", json={"text": REPLY, "context": cue}, timeout=60)
    assert invoked.json()["top_emotion"] == emotion
    # no_context: the answer of "okay" alone, whatever was said before.
    alone = requests.post(url, json={"text": REPLY}, timeout=60).json()
    ablated = requests.post(url, json={"text": REPLY, "context": cue, "no_context": True}, timeout=60).json()
    assert all(abs(alone["emotion"][k] - ablated["emotion"][k]) < 1e-5 for k in alone["emotion"])
    form_ablated = requests.post(
        url, files={"text": (None, REPLY), "context": (None, json.dumps(cue)), "no_context": (None, "true")}, timeout=60
    ).json()
    assert form_ablated["top_emotion"] == ablated["top_emotion"]


def test_health_says_which_context_the_checkpoint_reads(context_server: ServeProcess) -> None:
    health = requests.get(context_server.url + "/health", timeout=10).json()
    assert health["context"] == {"past": 1, "future": 0, "speakers": True}
    requests.post(context_server.url + "/predict", json={"dialogue": [{"text": "hi"}]}, timeout=60)
    after = requests.get(context_server.url + "/health", timeout=10).json()
    assert after["serving"]["batches"]["dialogues"] >= 1


LIMIT_CASES = {
    "too many rows": ({"dialogue": [{"text": "hi"}] * 257}, 413, "at most 256 rows"),
    "too many context lines": ({"text": "hi", "context": [{"text": "hi"}] * 257}, 413, "at most 256"),
    "texts over 64 KiB together": ({"dialogue": [{"text": "a" * 40_000}, {"text": "b" * 40_000}]}, 413, "together"),
    "context over 64 KiB with the text": (
        {"text": "a" * 40_000, "context": [{"text": "b" * 40_000}]}, 413, "together",
    ),
    "a dialogue with a text": ({"text": "hi", "dialogue": [{"text": "hi"}]}, 400, "dialogue alone"),
    "an empty dialogue": ({"dialogue": []}, 422, "dialogue"),
    "a row without text": ({"dialogue": [{"text": "hi"}, {"text": "  "}]}, 422, "row 2 has no text"),
    "a row missing text": ({"dialogue": [{"speaker": "Ross"}]}, 422, "dialogue.0.text"),
    "an unknown row field": ({"dialogue": [{"text": "hi", "clip": "a.mp4"}]}, 422, "dialogue.0.clip"),
    "a context line that is text": ({"text": "hi", "context": ["Rachel: hi"]}, 422, "context.0"),
    "both clip fields in a row": (
        {"dialogue": [{"text": "hi", "clip_b64": "AAAA", "clip_s3": "s3://b/k.mp4"}]}, 400, "not both",
    ),
    "a row's clip in S3 not allowed": ({"dialogue": [{"text": "hi", "clip_s3": "s3://b/k.mp4"}]}, 403, "allow-s3"),
    "a speaker name of a page": ({"text": "hi", "context": [{"speaker": "x" * 300, "text": "hi"}]}, 422, "speaker"),
}  # fmt: skip


@pytest.mark.parametrize("route", ["/predict", "/invocations"])
@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_bad_context_and_dialogue_requests_get_one_sentence(
    context_server: ServeProcess, route: str, case: str
) -> None:
    body, status, fragment = LIMIT_CASES[case]
    assert_error(requests.post(context_server.url + route, json=body, timeout=60), status, fragment)
    assert context_server.leftovers() == []


def test_bad_context_fields_in_a_form(context_server: ServeProcess) -> None:
    url = context_server.url + "/predict"
    not_json = requests.post(url, files={"text": (None, "hi"), "context": (None, "Rachel: hi")}, timeout=60)
    assert_error(not_json, 400, "not JSON")
    flag = requests.post(url, files={"text": (None, "hi"), "no_context": (None, "maybe")}, timeout=60)
    assert_error(flag, 422, "true or false")
    many = json.dumps([{"text": "hi"}] * 257)
    assert_error(requests.post(url, files={"text": (None, "hi"), "context": (None, many)}, timeout=60), 413, "256")


def test_a_bad_clip_costs_only_its_row(served: ServeProcess, clips: list[Path]) -> None:
    """On the sample's clip checkpoint: a row whose clip is not a video gets an error object, the others are
    answered in order; a row's clip over the limit refuses the request."""
    good, bad = (base64.b64encode(data).decode() for data in (clips[0].read_bytes(), b"not a video"))
    rows = [
        {"text": "Oh my God!", "speaker": "Rachel", "clip_b64": good, "clip_name": clips[0].name},
        {"text": "What?", "speaker": "Ross", "clip_b64": bad, "clip_name": "x.mp4"},
        {"text": "Nothing.", "speaker": "Rachel"},
    ]  # fmt: skip
    answer = requests.post(served.url + "/invocations", json={"dialogue": rows}, timeout=120)
    assert answer.status_code == 200, answer.text
    first, failed, third = answer.json()
    assert first["clip"] == clips[0].name and first["speaker"] == "Rachel" and "top_emotion" in first
    assert failed.keys() == {"clip", "text", "dialogue", "speaker", "error"} and failed["clip"] == "x.mp4"
    assert "x.mp4" in failed["error"] and "meldctl-serve-" not in failed["error"]
    assert third["clip"] is None and third["missing"] == ["audio", "video"]
    only_bad = requests.post(served.url + "/predict", json={"dialogue": rows[1:2]}, timeout=60)
    assert_error(only_bad, 422, "dialogue row 1")
    big = base64.b64encode(b"\0" * (2 * 2**20)).decode()
    assert_error(
        requests.post(
            served.url + "/predict", json={"dialogue": [rows[0], {"text": "x", "clip_b64": big}]}, timeout=60
        ),
        413,
        "limit of 1 MB",
    )
    assert served.leftovers() == []
