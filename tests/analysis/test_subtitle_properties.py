"""Property-based tests of the subtitle readers (SRT, WebVTT, ASS): whatever the bytes, one `MeldError` or cues;
a malformed cue is skipped and counted, never merged into another; the timeline's SRT reads back as written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from meldctl.analysis.segments import Segmentation, Utterance
from meldctl.analysis.subtitles import parse_subtitles
from meldctl.analysis.timeline import Timeline, cue_text, to_srt
from meldctl.errors import MeldError

pytestmark = pytest.mark.filterwarnings("ignore")  # pysubs2 warns about odd frame rates in MicroDVD guesses
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ'", min_size=1, max_size=8)
LINE = st.lists(WORD, min_size=1, max_size=6).map(" ".join).map(lambda line: line + ".")
NAMES = st.sampled_from(["ROSS", "RACHEL", "DR. GREEN", "MAN #2", "JOEY"])
# A timing line broken the ways files are: a letter in a number, a two-dash arrow, no end, seconds past 59.
BREAKS = st.sampled_from(["letter", "arrow", "no end", "seconds"])


TTML = b'<?xml version="1.0"?><tt xmlns="http://www.w3.org/ns/ttml"><body><div>'


def _read(path: Path, data: bytes) -> tuple[list[Utterance], list[str]] | None:
    """`parse_subtitles` of `data`; None when it refused the file with a `MeldError` (what bad input may do)."""
    path.write_bytes(data)
    try:
        cues, warnings = parse_subtitles(path)
    except MeldError as exc:
        assert "\n" not in exc.message and str(path) in exc.message
        return None
    for cue in cues:
        assert math.isfinite(cue.start) and math.isfinite(cue.end)
        assert cue.text == cue.text.strip() and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in cue.text)
        assert cue.speaker is None or (cue.speaker and cue.speaker == cue.speaker.strip())
    return cues, warnings


@SETTINGS
@given(data=st.binary(max_size=3000))
@example(data=b"1\n00:00:01,000 --> 00:00:02,000\nHi\n".decode().encode("utf-16-le"))
@example(data=b"[Script Info]\n[Events]\nFormat: Start, End, Text\nDialogue: 0:00:0x.00,0:00:02.00,Hi\n")
@example(data=b"WEBVTT\n\n99:99.999 --> 00:01.000\n<v>\n")
@example(data=TTML + b'<p begin="00:00:01.000" end="0')  # unclosed XML
@example(data=TTML + b'<p begin="x" end="y">Hi</p></div></body></tt>')  # a time pysubs2 does not implement
@example(data=b'{"info": {}, "styles": {}, "events": [{"start": "a"}]}')
def test_any_bytes_give_cues_or_one_error(tmp_path: Path, data: bytes) -> None:
    _read(tmp_path / "any.srt", data)


def _fragments() -> st.SearchStrategy[str]:
    """Text made of the pieces subtitle files are made of, in any order: what a fuzzer of bytes rarely builds."""
    pieces = st.sampled_from(
        ["1", "\n", "\r\n", "\n\n", " --> ", "-->", "00:00:01,000", "00:01.500", "12:34:56.789", "WEBVTT", "NOTE",
         "<v Ross>", "</v>", "<i>", "{\\an8}", "\\N", "ROSS: ", "- ", "Dialogue: 0,0:00:01.00,0:00:02.00,Default,",
         "[Script Info]", "[Events]", "[V4+ Styles]", "Format: Layer, Start, End, Style, Name, Text", ",", ":",
         "\x00", "\x85", "\u2028", "\ufeff", "&amp;", "&#0;", "Hi there", "{1}{25}", "[10][20]",
         '<?xml version="1.0"?><tt xmlns="http://www.w3.org/ns/ttml"><body><div><p begin="', '" end="', '">',
         "</p></div></body></tt>", "<SAMI><BODY><SYNC Start=", "<P>", '{"info": {}, "events": [{"start": ', "}]}"]
    )  # fmt: skip
    return st.lists(st.one_of(pieces, st.text(max_size=5)), max_size=60).map("".join)


@SETTINGS
@given(text=_fragments(), encoding=st.sampled_from(["utf-8", "utf-16", "utf-16-le", "cp1252"]))
def test_any_subtitle_like_text_gives_cues_or_one_error(tmp_path: Path, text: str, encoding: str) -> None:
    _read(tmp_path / "fragments.srt", text.encode(encoding, errors="replace"))


def _timestamp(ms: int, *, webvtt: bool) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    if webvtt and not hours:
        return f"{minutes:02d}:{seconds:02d}.{millis:03d}"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{'.' if webvtt else ','}{millis:03d}"


def _timing(start: int, end: int, broken: str | None, *, webvtt: bool) -> str:
    a, b = _timestamp(start, webvtt=webvtt), _timestamp(end, webvtt=webvtt)
    if broken == "letter":
        a = a[:-2] + "x" + a[-1]
    elif broken == "arrow":
        return f"{a} -> {b}"
    elif broken == "no end":
        return f"{a} -->"
    elif broken == "seconds":
        a = a[:-6] + "99" + a[-4:]
    return f"{a} --> {b}"


CUE = st.tuples(
    st.integers(0, 10 * 3_600_000),  # start, ms
    st.integers(1, 20_000),  # duration, ms
    st.lists(LINE, min_size=1, max_size=3),
    st.none() | NAMES,
    st.none() | BREAKS,
)


@SETTINGS
@given(cues=st.lists(CUE, max_size=12), webvtt=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]))
def test_malformed_cues_are_skipped_and_counted_never_merged(
    tmp_path: Path, cues: list, webvtt: bool, newline: str
) -> None:
    blocks = []
    for number, (start, duration, lines, name, broken) in enumerate(cues, 1):
        said = [f"{name}: {lines[0]}", *lines[1:]] if name else lines
        head = "" if webvtt and number % 2 else f"{number}\n"  # WebVTT cue ids are optional
        blocks.append(head + _timing(start, start + duration, broken, webvtt=webvtt) + "\n" + "\n".join(said))
    text = ("WEBVTT\n\n" if webvtt else "") + "\n\n".join(blocks) + "\n"
    got = _read(tmp_path / ("cues.vtt" if webvtt else "cues.srt"), text.replace("\n", newline).encode())
    valid = [(s / 1000, (s + d) / 1000, " ".join(lines), name) for s, d, lines, name, broken in cues if not broken]
    broken = sum(1 for *_, b in cues if b)
    if not valid:
        assert got is None  # nothing to read: refused, with the count of malformed cues
        return
    assert got is not None
    read, warnings = got
    assert [(c.start, c.end, c.text, c.speaker) for c in read] == valid
    assert warnings == ([f"{broken} malformed cue(s) (no valid 'start --> end' line): skipped"] if broken else [])


@SETTINGS
@given(cues=st.lists(st.tuples(st.integers(0, 3_600_000), st.integers(1, 9_000), LINE, st.none() | NAMES), min_size=1,
                     max_size=10))  # fmt: skip
def test_ass_events_keep_their_times_text_and_name(tmp_path: Path, cues: list) -> None:
    def t(ms: int) -> str:
        cs = ms // 10
        return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"

    head = ["[Script Info]", "ScriptType: v4.00+", "", "[Events]",
            "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]  # fmt: skip
    events = [f"Dialogue: 0,{t(s)},{t(s + d)},Default,{n or ''},0,0,0,,{line}" for s, d, line, n in cues]
    got = _read(tmp_path / "events.ass", "\n".join([*head, *events, ""]).encode())
    assert got is not None
    assert [(c.start, c.end, c.text, c.speaker) for c in got[0]] == [
        (s // 10 / 100, (s + d) // 10 / 100, line, n) for s, d, line, n in cues
    ]


def _timeline(rows: list) -> Timeline:
    from meldctl.inference import Prediction

    emotions, sentiments = ["neutral", "joy", "anger"], ["neutral", "positive", "negative"]
    utterances = [Utterance(s / 1000, (s + d) / 1000, text, name) for s, d, text, name, _ in rows]
    predictions = [
        Prediction(None, text, {"neutral": 1 - p, "joy": p / 2, "anger": p / 2}, dict.fromkeys(sentiments, 1 / 3))
        for _, _, text, _, p in rows
    ]
    model = {"labels": {"emotion": emotions, "sentiment": sentiments}, "checkpoint": "c.pt", "modalities": ["text"]}
    return Timeline("ep.mp4", 1e6, Segmentation("subtitles", "ep.srt", utterances), model, utterances, predictions)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3_600_000), st.integers(1, 9_000), LINE, st.none() | NAMES, st.floats(0, 1)),
        min_size=1,
        max_size=10,
    )
)
def test_the_timeline_srt_reads_back_as_written(tmp_path: Path, rows: list) -> None:
    """timeline.srt through meldctl's own reader: the same times, the speaker as the speaker, the text as written."""
    timeline = _timeline(sorted(rows, key=lambda row: row[:2]))
    got = _read(tmp_path / "timeline.srt", to_srt(timeline).encode())
    assert got is not None and got[1] == []
    read = got[0]
    order = list(zip(timeline.utterances, timeline.predictions, strict=True))
    assert [(c.start, c.end) for c in read] == [(u.start, u.end) for u, _ in order]
    assert [c.speaker for c in read] == [u.speaker for u, _ in order]
    assert [c.text for c in read] == [cue_text(Utterance(u.start, u.end, u.text), p) for u, p in order]
