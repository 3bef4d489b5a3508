"""`meldctl analyze` end to end on a synthetic episode: subtitles, speech recognition, voice activity, bad input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()


def _linked(video: Path, folder: Path, name: str = "ep.mp4") -> Path:
    """The video under another name in `folder`, where a test can put (or not put) subtitles beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / name
    link.symlink_to(video)
    return link


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def _one_error(result) -> str:  # noqa: ANN001
    """The error line of a failed run, checking that it failed cleanly: one `Error:` line, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_subtitles_beside_the_video_give_the_timeline(trained_run: Path, episode, tmp_path: Path) -> None:  # noqa: ANN001
    from episode import write_srt

    video = _linked(episode.video, tmp_path / "show")
    write_srt(video.with_suffix(".srt"), episode.cues)
    result = runner.invoke(app, ["analyze", str(video), "--ckpt", str(trained_run / "best.pt"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "show" / "ep.meldctl"  # the default: beside the video
    assert sorted(p.name for p in out.iterdir()) == ["timeline.csv", "timeline.json", "timeline.png", "timeline.srt"]
    data = json.loads((out / "timeline.json").read_text())
    assert data["segmentation"]["method"] == "subtitles" and data["segmentation"]["source"].endswith("ep.srt")
    assert [u["text"] for u in data["utterances"]] == [c.text for c in episode.cues]
    assert [u["start"] for u in data["utterances"]] == [round(c.start, 3) for c in episode.cues]
    assert "8 utterances from subtitles" in result.output and "share (time)" in result.output
    # Not a terminal: plain progress lines that a log keeps.
    assert "classifying utterances: 8/8" in result.output


def test_asr_without_subtitles_json_on_stdout(trained_run: Path, episode, tmp_path: Path) -> None:  # noqa: ANN001
    result = runner.invoke(
        app,
        ["analyze", str(episode.video), "--ckpt", str(trained_run / "best.pt"), "--out", str(tmp_path / "o"), "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((tmp_path / "o" / "timeline.json").read_text())
    assert data["segmentation"]["method"] == "asr"  # auto: no subtitles, and the checkpoint reads text
    assert len(data["utterances"]) == len(episode.cues)
    for cue, row in zip(episode.cues, data["utterances"], strict=True):
        assert row["start"] == pytest.approx(cue.start, abs=0.5)
        assert len(_words(cue.text) & _words(row["text"])) >= 0.7 * len(_words(cue.text))
    assert "finding utterances in the audio: " in result.output


def test_vad_for_a_checkpoint_that_reads_no_text(av_run: Path, episode, tmp_path: Path) -> None:  # noqa: ANN001
    result = runner.invoke(
        app,
        ["analyze", str(episode.video), "--ckpt", str(av_run / "best.pt"), "--out", str(tmp_path / "o"), "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["segmentation"]["method"] == "vad" and data["modalities"] == ["audio", "video"]
    assert len(data["utterances"]) == len(episode.cues)
    assert all(row["text"] is None for row in data["utterances"])
    srt = (tmp_path / "o" / "timeline.srt").read_text()
    assert re.search(r"\[(neutral|surprise|fear|sadness|joy|disgust|anger) \d\.\d\d\]", srt)


def _garbage_model(folder: Path) -> str:
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\x00not a model" * 64)
    return str(folder)


BAD_INPUT = {
    "no audio and no subtitles": (lambda tmp, ep, silent: [str(silent.video)], "no audio stream and no subtitles"),
    "a text file named .mp4": (
        lambda tmp, ep, silent: [str(_write(tmp / "notes.mp4", b"these are my notes, not a video\n" * 64))],
        "is not a video",
    ),
    "a 0-byte video": (lambda tmp, ep, silent: [str(_write(tmp / "empty.mp4", b""))], "is empty"),
    "a missing video": (lambda tmp, ep, silent: [str(tmp / "nope.mp4")], "does not exist"),
    "binary garbage as subtitles": (
        lambda tmp, ep, silent: [str(ep.video), "--subtitles", str(_write(tmp / "s.srt", bytes(range(256)) * 8))],
        "is not a subtitle file",
    ),
    "subtitles that match nothing": (
        lambda tmp, ep, silent: [
            str(ep.video),
            "--subtitles",
            str(_write(tmp / "s.srt", b"1\n05:00:00,000 --> 05:00:02,000\nfrom another film\n")),
        ],
        "start after the end of the video",
    ),
    "subtitles with reversed times only": (
        lambda tmp, ep, silent: [
            str(ep.video),
            "--subtitles",
            str(_write(tmp / "s.srt", b"1\n00:00:05,000 --> 00:00:01,000\nbackwards\n")),
        ],
        "end before they start",
    ),
    "an unreadable ASR model": (
        lambda tmp, ep, silent: [str(ep.video), "--segment", "asr", "--asr-model", _garbage_model(tmp / "m")],
        "cannot load the speech-recognition model",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_leaves_out_untouched(
    case: str,
    trained_run: Path,
    episode,  # noqa: ANN001
    silent_episode,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    make_args, message = BAD_INPUT[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "timeline.json").write_text("from an earlier run")
    args = make_args(tmp_path, episode, silent_episode)
    result = runner.invoke(app, ["analyze", *args, "--ckpt", str(trained_run / "best.pt"), "--out", str(out)])
    assert message in _one_error(result)
    assert [p.name for p in out.iterdir()] == ["timeline.json"]
    assert (out / "timeline.json").read_text() == "from an earlier run"


def test_subtitles_with_asr_is_a_usage_error(trained_run: Path, episode, tmp_path: Path) -> None:  # noqa: ANN001
    result = runner.invoke(
        app, ["analyze", str(episode.video), "--segment", "asr", "--subtitles", str(tmp_path / "x.srt")]
    )
    assert result.exit_code == 2 and "--subtitles" in result.output


def test_no_audio_stream_with_subtitles(trained_run: Path, silent_episode, tmp_path: Path) -> None:  # noqa: ANN001
    """Subtitles place the utterances; the checkpoint's audio is missing for all of them: every utterance is
    answered from text and video (the model's stand-in for audio), says so, and the timeline warns once."""
    from episode import write_srt

    srt = write_srt(tmp_path / "s.srt", silent_episode.cues)
    out = tmp_path / "o"
    result = runner.invoke(
        app,
        ["analyze", str(silent_episode.video), "--subtitles", str(srt), "--ckpt", str(trained_run / "best.pt"),
         "--out", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(row["missing"] == ["audio"] for row in data["utterances"])
    assert any("no audio stream" in w for w in data["warnings"])
    assert (out / "timeline.json").is_file()


def test_progress_in_a_log_is_a_plain_line_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from meldctl.cli import analyze_progress
    from meldctl.cli.analyze_progress import AnalyzeProgress, rate_line

    clock = iter([0.0, 1.0, 2.0, 6.0, 7.0, 20.0, 21.0])
    monkeypatch.setattr(analyze_progress.time, "perf_counter", lambda: next(clock))
    log = io.StringIO()
    with AnalyzeProgress(Console(file=log, force_terminal=False, width=200), interval=5.0) as progress:
        for done in (0, 8, 16, 24, 32, 40, 40):  # the first call starts the clock; 40/40 twice
            progress("classify", done, 40)
    lines = log.getvalue().splitlines()
    assert lines == [
        "classifying utterances: 8/40, 8.0 utterances/s, ETA 0:04",
        "classifying utterances: 24/40, 4.0 utterances/s, ETA 0:04",
        "classifying utterances: 40/40, 2.0 utterances/s, ETA 0:00",
    ]
    expected = "finding utterances in the audio: 1:30/5:00 of audio, 3.0x real time, ETA 1:10"
    assert rate_line("segment", 90, 300, 30) == expected


def _unwritable(kind: str, tmp: Path) -> Path:
    if kind == "a file":
        return _write(tmp / "timeline.txt", b"not a folder")
    if kind == "below a file":
        return _write(tmp / "file", b"x") / "sub" / "out"
    if kind == "a read-only folder":
        if os.geteuid() == 0:  # root writes through permission bits: sysfs refuses even root
            return Path("/sys/kernel")
        folder = tmp / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if kind == "an output name taken by a folder":
        (tmp / "o" / "timeline.png").mkdir(parents=True)
        return tmp / "o"
    return Path(kind)  # /proc, /dev/null


@pytest.mark.parametrize(
    "kind", ["a file", "below a file", "/proc", "/dev/null", "a read-only folder", "an output name taken by a folder"]
)
def test_an_out_that_cannot_be_written_is_refused_before_any_work(
    kind: str,
    trained_run: Path,
    episode,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    out = _unwritable(kind, tmp_path)
    result = runner.invoke(
        app, ["analyze", str(episode.video), "--ckpt", str(trained_run / "best.pt"), "--out", str(out)]
    )
    error = _one_error(result)
    assert str(out) in error and "cannot write" in error
    assert "classifying" not in result.output and "checkpoint:" not in result.output  # refused before the work


SPEAKERS = ["Rachel", "Ross", "Rachel", "Ross", None, "Rachel", "Ross", "Rachel"]


def _ass(cues: list, names: list) -> str:
    def t(seconds: float) -> str:
        cs = round(seconds * 100)
        return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"

    head = ["[Script Info]", "ScriptType: v4.00+", "", "[Events]",
            "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]  # fmt: skip
    lines = [
        f"Dialogue: 0,{t(c.start)},{t(c.end)},Default,{n or ''},0,0,0,,{c.text}"
        for c, n in zip(cues, names, strict=True)
    ]
    return "\n".join([*head, *lines, ""])


def _vtt(cues: list, names: list) -> str:
    from episode import srt_time

    blocks = [
        f"{srt_time(c.start).replace(',', '.')} --> {srt_time(c.end).replace(',', '.')}\n"
        + (f"<v {n}>{c.text}</v>" if n else c.text)
        for c, n in zip(cues, names, strict=True)
    ]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + "\n"


def _named_srt(cues: list, names: list) -> str:
    from episode import srt_time

    # Rachel in capitals (counts at once), Ross in mixed case (counts because he opens several cues).
    said = [f"{n.upper() if n == 'Rachel' else n}: {c.text}" if n else c.text for c, n in zip(cues, names, strict=True)]
    return "\n".join(
        f"{k}\n{srt_time(c.start)} --> {srt_time(c.end)}\n{text}\n"
        for k, (c, text) in enumerate(zip(cues, said, strict=True), 1)
    )


@pytest.mark.parametrize(("suffix", "write"), [(".ass", _ass), (".vtt", _vtt), (".srt", _named_srt)])
def test_speakers_from_the_subtitles_reach_every_output(
    suffix: str,
    write,  # noqa: ANN001
    trained_run: Path,
    episode,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    import csv

    import matplotlib.image
    import pysubs2

    subs = tmp_path / f"named{suffix}"
    subs.write_text(write(episode.cues, SPEAKERS), encoding="utf-8")
    out = tmp_path / "o"
    args = ["analyze", str(episode.video), "--subtitles", str(subs), "--ckpt", str(trained_run / "best.pt")]
    result = runner.invoke(app, [*args, "--out", str(out), "--by-speaker", "--json"])
    assert result.exit_code == 0, result.output
    expected = [n.upper() if n == "Rachel" and suffix == ".srt" else n for n in SPEAKERS]
    data = json.loads((out / "timeline.json").read_text())
    assert [row["speaker"] for row in data["utterances"]] == expected
    assert [row["text"] for row in data["utterances"]] == [c.text for c in episode.cues]  # prefixes removed
    assert [s["speaker"] for s in data["speakers"]] == [expected[0], expected[1], None]
    assert [s["utterances"] for s in data["speakers"]] == [4, 3, 1]
    rows = list(csv.DictReader((out / "timeline.csv").open(encoding="utf-8")))
    assert [row["speaker"] for row in rows] == [n or "" for n in expected]
    cues = pysubs2.load(str(out / "timeline.srt"))
    assert cues[0].plaintext.startswith(f"{expected[0]}: [") and cues[4].plaintext.startswith("[")
    split = matplotlib.image.imread(out / "timeline.png")  # [H, W, 4]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "whole")])
    whole = matplotlib.image.imread(tmp_path / "whole" / "timeline.png")
    assert split.shape[0] != whole.shape[0]  # a panel per speaker (3) instead of a band per emotion (7)
