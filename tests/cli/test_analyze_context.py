"""`meldctl analyze` with dialogue context: a spoken episode of the synthetic dialogues (tests/dialogues.py), whose
subtitles name the speakers, analysed as one conversation. Only the line before says what "okay" means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dialogues import CUES, REPLY
from typer.testing import CliRunner

from meldctl.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

# (cue speaker, reply speaker, emotion, cue): six dialogues, each emotion twice, turns alternating between speakers.
DIALOGUES = [
    ("MONICA", "ROSS", "joy", CUES["joy"][0]),
    ("RACHEL", "JOEY", "sadness", CUES["sadness"][0]),
    ("ROSS", "MONICA", "anger", CUES["anger"][0]),
    ("JOEY", "RACHEL", "sadness", CUES["sadness"][2]),
    ("MONICA", "JOEY", "anger", CUES["anger"][2]),
    ("ROSS", "RACHEL", "joy", CUES["joy"][1]),
]
GOLD = [emotion for *_, emotion, _ in DIALOGUES for _ in range(2)]


@pytest.fixture(scope="module")
def dialogue_episode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The video (espeak-ng saying every line) with its SRT beside it: `NAME: line` cues, a cue line then its
    reply, dialogue after dialogue."""
    from episode import have_espeak, srt_time, write_episode

    assert have_espeak(), "the analysis tests need espeak-ng: apt-get install espeak-ng (.ci/run does)"
    lines = [(speaker, text) for a, b, _, cue in DIALOGUES for speaker, text in ((a, cue), (b, REPLY))]
    episode = write_episode(tmp_path_factory.mktemp("dialogue-episode") / "talk.mp4", [t for _, t in lines])
    blocks = [
        f"{n}\n{srt_time(c.start)} --> {srt_time(c.end)}\n{speaker}: {c.text}\n"
        for n, (c, (speaker, _)) in enumerate(zip(episode.cues, lines, strict=True), 1)
    ]
    episode.video.with_suffix(".srt").write_text("\n".join(blocks), encoding="utf-8")
    return episode.video


def _analyze(video: Path, ckpt: Path, out: Path, *flags: str) -> dict:
    args = ["analyze", str(video), "--ckpt", str(ckpt), "--out", str(out), "--device", "cpu", "--json", *flags]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((out / "timeline.json").read_text())
    return data


def _reply_accuracy(data: dict) -> float:
    rows = data["utterances"]
    assert [row["text"] for row in rows[1::2]] == [REPLY] * len(DIALOGUES)
    return sum(row["top_emotion"] == gold for row, gold in zip(rows[1::2], GOLD[1::2], strict=True)) / len(DIALOGUES)


def _scores(data: dict) -> list:
    return [(row["emotion"], row["sentiment"]) for row in data["utterances"]]


def test_replies_are_read_in_their_conversation(
    dialogue_models: dict[str, Path], dialogue_episode: Path, tmp_path: Path
) -> None:
    with_context = _analyze(dialogue_episode, dialogue_models["context"], tmp_path / "a")
    rows = with_context["utterances"]
    assert [row["speaker"] for row in rows] == [name for a, b, *_ in DIALOGUES for name in (a, b)]
    assert with_context["context"] == {"past": 1, "future": 0, "speakers": True, "used": True}
    assert _reply_accuracy(with_context) >= 5 / 6

    # The same weights with every utterance alone: "okay" is one emotion whatever was said before it.
    alone = _analyze(dialogue_episode, dialogue_models["context"], tmp_path / "b", "--no-context")
    assert alone["context"] == {"past": 0, "future": 0, "speakers": False, "used": False}
    assert len({row["top_emotion"] for row in alone["utterances"][1::2]}) == 1
    assert _reply_accuracy(alone) <= 0.5
    csv_header = (tmp_path / "a" / "timeline.csv").read_text().splitlines()[0]
    assert csv_header.startswith("index,start,end,speaker,text")

    # A checkpoint trained on the past only: --causal is its default window.
    causal = _analyze(dialogue_episode, dialogue_models["context"], tmp_path / "c", "--causal")
    assert _scores(causal) == _scores(with_context) and causal["context"] == with_context["context"]


def test_a_checkpoint_without_context_gives_the_timeline_it_always_gave(
    dialogue_models: dict[str, Path], dialogue_episode: Path, tmp_path: Path
) -> None:
    from meldctl.inference import Predictor

    default = _analyze(dialogue_episode, dialogue_models["alone"], tmp_path / "a")
    assert default["context"] == {"past": 0, "future": 0, "speakers": False, "used": False}
    # What analyze did before dialogue context: every batch of 8 utterances through `Predictor.run` as decoded.
    predictor = Predictor.from_path(dialogue_models["alone"], "cpu")
    inputs = [predictor.prepare_media(row["text"], frames=None, waveform=None) for row in default["utterances"]]
    expected = [p for i in range(0, len(inputs), 8) for p in predictor.run(inputs[i : i + 8])]
    assert _scores(default) == [(p.emotion, p.sentiment) for p in expected]
    for flag in ("--no-context", "--causal"):
        again = _analyze(dialogue_episode, dialogue_models["alone"], tmp_path / flag, flag)
        assert _scores(again) == _scores(default)
    args = ["analyze", str(dialogue_episode), "--ckpt", str(dialogue_models["alone"]), "--out", str(tmp_path / "w")]
    warned = runner.invoke(app, [*args, "--device", "cpu", "--causal"])
    assert warned.exit_code == 0 and "trained without dialogue context: --causal changes nothing" in warned.output


def test_causal_drops_the_later_utterances_of_a_past_and_future_checkpoint(
    dialogue_models: dict[str, Path], dialogue_episode: Path, tmp_path: Path
) -> None:
    from dialogues import train_dialogue_model

    from meldctl.inference import Predictor

    ckpt = train_dialogue_model(
        dialogue_models["data"], dialogue_models["text_model"], tmp_path / "run", past=1, future=1
    )
    both = _analyze(dialogue_episode, ckpt, tmp_path / "a")
    causal = _analyze(dialogue_episode, ckpt, tmp_path / "b", "--causal")
    assert both["context"] == {"past": 1, "future": 1, "speakers": True, "used": True}
    assert causal["context"] == {"past": 1, "future": 0, "speakers": True, "used": True}
    # Each is the whole conversation through the Predictor with that window.
    predictor = Predictor.from_path(ckpt, "cpu")
    rows = both["utterances"]
    inputs = [predictor.prepare_media(row["text"], frames=None, waveform=None) for row in rows]
    speakers = [row["speaker"] for row in rows]
    for data, future in ((both, None), (causal, 0)):
        expected = predictor.run_dialogue(inputs, speakers, future=future, batch_size=8)
        for row, answer in zip(data["utterances"], expected, strict=True):
            assert row["emotion"] == pytest.approx(answer.emotion, abs=1e-6)
    assert _scores(both) != _scores(causal)


def test_folder_mode_passes_the_context_through(
    dialogue_models: dict[str, Path], dialogue_episode: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for source in (dialogue_episode, dialogue_episode.with_suffix(".srt")):
        (folder / source.name).symlink_to(source)
    ckpt = str(dialogue_models["context"])
    result = runner.invoke(app, ["analyze", str(folder), "--ckpt", ckpt, "--out", str(tmp_path / "o"), "--no-context"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "o" / "talk" / "timeline.json").read_text())
    assert data["context"]["used"] is False and _reply_accuracy(data) <= 0.5


def test_causal_and_no_context_exclude_each_other(dialogue_models: dict[str, Path], dialogue_episode: Path) -> None:
    args = ["analyze", str(dialogue_episode), "--ckpt", str(dialogue_models["context"]), "--causal", "--no-context"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_serve_analyze_answers_what_analyze_json_prints_with_context(
    dialogue_models: dict[str, Path], dialogue_episode: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests
    from serve_servers import start_thread_server

    from meldctl.inference import Predictor
    from meldctl.serving.app import build_app
    from meldctl.settings import ServeSettings

    monkeypatch.chdir(dialogue_episode.parent)  # the CLI then names the files as the upload does
    printed = _analyze(Path(dialogue_episode.name), dialogue_models["context"], tmp_path / "a")
    predictor = Predictor.from_path(dialogue_models["context"], "cpu")
    server = start_thread_server(build_app(predictor, ServeSettings()))
    try:
        with open(dialogue_episode, "rb") as video, open(dialogue_episode.with_suffix(".srt"), "rb") as subtitles:
            files = {"video": ("talk.mp4", video), "subtitles": ("talk.srt", subtitles)}
            answer = requests.post(server.url + "/analyze", files=files, timeout=600)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["context"]["used"] is True and _reply_accuracy(served) >= 5 / 6
    del served["seconds"], printed["seconds"]
    assert served == printed
