"""Classification of a whole episode through the same Predictor as predict, and the timeline outputs."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest

from meldctl.analysis.outputs import OUTPUT_FILES, write_outputs
from meldctl.analysis.pipeline import _background, analyze, choose_method, classify
from meldctl.analysis.segments import Utterance
from meldctl.analysis.timeline import summary
from meldctl.errors import AnalysisError
from meldctl.media.stream import probe_video


@pytest.fixture(scope="module")
def predictor(trained_run: Path):
    from meldctl.inference import Predictor

    return Predictor.from_path(trained_run / "best.pt", "cpu")


@pytest.fixture(scope="module")
def timeline(predictor, episode, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001
    from episode import Cue, write_srt

    srt = write_srt(tmp_path_factory.mktemp("subs") / "ep.srt", [*episode.cues, Cue(3600.0, 3601.0, "after the end")])
    return analyze(episode.video, predictor, subtitles=srt, batch_size=3)


@pytest.mark.parametrize(
    ("requested", "subtitles", "has_audio", "reads_text", "expected"),
    [
        ("auto", True, True, True, "subtitles"),
        ("auto", True, False, True, "subtitles"),
        ("auto", False, True, True, "asr"),
        ("auto", False, True, False, "vad"),
        ("asr", True, True, False, "asr"),
        ("vad", False, True, True, "vad"),
        ("subtitles", True, False, False, "subtitles"),
    ],
)
def test_choose_method(requested: str, subtitles: bool, has_audio: bool, reads_text: bool, expected: str) -> None:
    subs = Path("ep.srt") if subtitles else None
    got = choose_method(requested, subtitles=subs, has_audio=has_audio, reads_text=reads_text, video=Path("ep.mp4"))
    assert got == expected


@pytest.mark.parametrize(
    ("requested", "subtitles", "has_audio", "message"),
    [
        ("auto", False, False, "no audio stream and no subtitles"),
        ("asr", False, False, "no audio stream to find speech in"),
        ("subtitles", False, True, "no subtitles given and none found"),
    ],
)
def test_choose_method_refuses(requested: str, subtitles: bool, has_audio: bool, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        choose_method(requested, subtitles=None, has_audio=has_audio, reads_text=True, video=Path("ep.mp4"))


def test_subtitle_timeline_reproduces_the_cues(timeline, episode) -> None:  # noqa: ANN001
    assert timeline.segmentation.method == "subtitles"
    assert [(u.start, u.end, u.text) for u in timeline.utterances] == [
        (round(c.start, 3), round(c.end, 3), c.text) for c in episode.cues
    ]
    assert timeline.warnings == ["1 cue(s) start after the end of the video (0:28): skipped"]
    assert len(timeline.predictions) == len(episode.cues)
    for p in timeline.predictions:
        assert sum(p.emotion.values()) == pytest.approx(1, abs=1e-4) and not p.missing
    assert timeline.duration == pytest.approx(episode.duration, abs=0.1)


def test_a_span_gets_the_same_answer_as_predict_on_the_whole_clip(predictor, episode) -> None:  # noqa: ANN001
    """The same Predictor path: the episode's whole picture as one span, streamed, equals `predict` on the file."""
    import av

    with av.open(str(episode.video)) as container:
        stream = container.streams.video[0]
        end = float(stream.duration * stream.time_base)  # the picture ends a little before the sound here
    text = "Hey, how are you doing today?"
    streamed = classify(predictor, probe_video(episode.video), [Utterance(0.0, end, text)])[0]
    direct = predictor.predict(episode.video, text)
    assert streamed.emotion == direct.emotion and streamed.sentiment == direct.sentiment


def test_summary_shares_add_up(timeline) -> None:  # noqa: ANN001
    shares = summary(timeline)
    assert [s.emotion for s in shares] == timeline.emotions
    assert sum(s.count for s in shares) == len(timeline.utterances)
    assert sum(s.count_share for s in shares) == pytest.approx(1)
    assert sum(s.time_share for s in shares) == pytest.approx(1)
    assert sum(s.seconds for s in shares) == pytest.approx(sum(u.duration for u in timeline.utterances))


def test_outputs_are_written_and_parse(timeline, tmp_path: Path) -> None:  # noqa: ANN001
    import matplotlib.image
    import pysubs2

    files = write_outputs(timeline, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)
    data = json.loads(files["timeline.json"].read_text())
    assert data["segmentation"] == {"method": "subtitles", "source": timeline.segmentation.source, "utterances": 8}
    first = data["utterances"][0]
    assert first["index"] == 1 and first["text"] == timeline.utterances[0].text
    assert set(first["emotion"]) == set(timeline.emotions) and first["top_emotion"] in timeline.emotions
    assert data["warnings"] == timeline.warnings and data["duration"] == pytest.approx(timeline.duration, abs=1e-3)
    rows = list(csv.DictReader(io.StringIO(files["timeline.csv"].read_text())))
    assert len(rows) == 8 and rows[2]["text"] == timeline.utterances[2].text
    assert float(rows[2]["start"]) == pytest.approx(timeline.utterances[2].start, abs=1e-3)
    assert rows[2]["top_emotion"] == timeline.predictions[2].top_emotion
    subs = pysubs2.load(str(files["timeline.srt"]))
    assert len(subs) == 8 and subs[0].start == round(timeline.utterances[0].start * 1000)
    top = timeline.predictions[0]
    assert subs[0].plaintext == f"[{top.top_emotion} {top.emotion[top.top_emotion]:.2f}] {timeline.utterances[0].text}"
    image = matplotlib.image.imread(files["timeline.png"])  # [H, W, 4]
    assert image.shape[1] > 1000 and image.shape[0] > 400


def test_a_failed_render_writes_nothing(timeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import meldctl.analysis.outputs as outputs

    def broken(timeline, **options):  # noqa: ANN001, ANN003, ANN202
        raise RuntimeError("no fonts")

    monkeypatch.setattr(outputs, "plot_timeline", broken)
    with pytest.raises(RuntimeError):
        write_outputs(timeline, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_background_raises_the_producer_s_error_here() -> None:
    def items():  # noqa: ANN202
        yield 1
        yield 2
        raise ValueError("decoder broke")

    got = []
    with pytest.raises(ValueError, match="decoder broke"):
        for item in _background(items(), depth=1):
            got.append(item)
    assert got == [1, 2]


def test_background_stops_its_thread_when_the_consumer_stops() -> None:
    closed = threading.Event()

    def items():  # noqa: ANN202
        try:
            yield from range(1000)
        finally:
            closed.set()

    for item in _background(items(), depth=2):
        if item == 3:
            break
    assert closed.wait(5) and not any(t.name == "meldctl-decode" for t in threading.enumerate())


def test_many_cues_of_very_different_lengths(predictor, episode, tmp_path: Path) -> None:  # noqa: ANN001
    """200 cues of 1 to 150 words: token counting (decoding thread) and batched tokenising (main thread) share
    the checkpoint's fast tokenizer. They once raced: "expected sequence of length 3 at dim 1 (got 82)"."""
    import random

    from episode import Cue, write_srt
    from helpers import WORDS

    rng = random.Random(7)
    step = episode.duration / 200
    cues = [
        Cue(n * step, (n + 0.9) * step, " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 150))))
        for n in range(200)
    ]
    timeline = analyze(episode.video, predictor, subtitles=write_srt(tmp_path / "many.srt", cues), batch_size=8)
    assert len(timeline.predictions) == 200
    assert [p.text for p in timeline.predictions] == [c.text for c in cues]
    long = [p for p, c in zip(timeline.predictions, cues, strict=True) if len(c.text.split()) > 130]
    assert long and all(any("text truncated" in w for w in p.warnings) for p in long)
