from __future__ import annotations

from pathlib import Path

import pytest

from meldctl.analysis.segments import Utterance
from meldctl.analysis.subtitles import (
    check_cues,
    clean_cue_text,
    find_subtitles,
    parse_subtitles,
    subtitle_segmentation,
)
from meldctl.errors import AnalysisError, SubtitleError

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>- Hello there!</i>
- <b>Hi.</b>

2
00:00:03,250 --> 00:00:05,000
Two lines
of one sentence.
"""

VTT = """WEBVTT

00:01.000 --> 00:02.500 align:start
<v Roger>Rock &amp; roll</v>

00:00:03.250 --> 00:00:05.000
<c.yellow>Karaoke</c> <00:00:04.000>style
"""

ASS = "\n".join(
    [
        "[Script Info]",
        "ScriptType: v4.00+",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, Alignment, MarginL, MarginR, MarginV, Encoding",
        "Style: Default,Arial,20,&H00FFFFFF,0,0,2,10,10,10,1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
        "Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\\pos(10,20)\\i1}Oh my God!{\\i0}\\NWhat?",
        "Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,a translator's note",
        "Dialogue: 0,0:00:03.25,0:00:05.00,Default,,0,0,0,,{\\an8}Second {\\b1}line{\\b0}",
        "",
    ]
)


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("{\\i1}- Hello there!{\\i0}\\N- {\\b1}Hi.{\\b0}", "Hello there! Hi."),
        ("<v Roger>Rock &amp; roll</v>", "Rock & roll"),
        ("<c.yellow>Karaoke</c> <00:00:04.000>style", "Karaoke style"),
        ("\u2013 Who's there?\\n\u2014 Me.", "Who's there? Me."),
        ("  spaced\\h\\hout  ", "spaced out"),
        ("{\\an8}", ""),
    ],
)
def test_clean_cue_text_strips_markup_tags_and_speaker_dashes(raw: str, spoken: str) -> None:
    assert clean_cue_text(raw) == spoken


@pytest.mark.parametrize(
    ("suffix", "content", "texts"),
    [
        (".srt", SRT, ["Hello there! Hi.", "Two lines of one sentence."]),
        (".vtt", VTT, ["Rock & roll", "Karaoke style"]),
        (".ass", ASS, ["Oh my God! What?", "Second line"]),
    ],
)
def test_each_format_gives_cue_times_and_clean_text(
    tmp_path: Path, suffix: str, content: str, texts: list[str]
) -> None:
    path = tmp_path / f"subs{suffix}"
    path.write_text(content, encoding="utf-8")
    cues, warnings = parse_subtitles(path)
    assert [(c.start, c.end) for c in cues] == [(1.0, 2.5), (3.25, 5.0)]
    assert [c.text for c in cues] == texts and warnings == []


def test_windows_1252_subtitles_are_read(tmp_path: Path) -> None:
    path = tmp_path / "old.srt"
    path.write_bytes(
        "1\r\n00:00:01,000 --> 00:00:02,000\r\nCaf\u00e9 cr\u00e8me \u2013 s'il vous pla\u00eet\r\n".encode("cp1252")
    )
    assert parse_subtitles(path)[0][0].text == "Caf\u00e9 cr\u00e8me \u2013 s'il vous pla\u00eet"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02\xff\xfe garbage \x00" * 40, "binary"),
        (b"", "no known subtitle format"),
        (b"just a shopping list\nmilk\neggs\n", "no known subtitle format"),
        (bytes(range(0x80, 0xA0)) * 8, "not UTF-8"),
        (b"WEBVTT\n\nNOTE nothing but a note\n", "holds no subtitle cue"),
    ],
)
def test_malformed_subtitles_raise_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.srt"
    path.write_bytes(content)
    with pytest.raises(SubtitleError, match=message) as caught:
        parse_subtitles(path)
    assert str(path) in caught.value.message and "\n" not in caught.value.message


def test_missing_subtitle_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SubtitleError, match="cannot read subtitles"):
        parse_subtitles(tmp_path / "nope.srt")


def test_check_cues_skips_late_reversed_and_empty_cues_and_cuts_at_the_end() -> None:
    cues = [
        Utterance(5.0, 7.0, "second"),
        Utterance(1.0, 2.0, "first"),
        Utterance(3.0, 2.0, "reversed"),
        Utterance(4.0, 4.5, ""),
        Utterance(9.0, 12.0, "runs past the end"),
        Utterance(356400.0, 356401.0, "far future"),
        Utterance(10.0, 11.0, "starts at the end"),
        Utterance(-1.0, 0.5, "negative start"),
    ]
    kept, warnings = check_cues(cues, duration=10.0)
    assert kept == [
        Utterance(0.0, 0.5, "negative start"),
        Utterance(1.0, 2.0, "first"),
        Utterance(5.0, 7.0, "second"),
        Utterance(9.0, 10.0, "runs past the end"),
    ]
    assert any("2 cue(s) start after the end of the video (0:10)" in w for w in warnings)
    assert any("1 cue(s) end before they start" in w for w in warnings)
    assert any("1 cue(s) hold no text" in w for w in warnings)


def test_subtitles_that_match_nothing_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "other.srt"
    path.write_text("1\n10:00:00,000 --> 10:00:02,000\nfrom a longer film\n", encoding="utf-8")
    with pytest.raises(AnalysisError, match=r"no cue of .* can be used .*1 cue\(s\) start after the end") as caught:
        subtitle_segmentation(path, duration=30.0)
    assert caught.value.hint and "--segment asr" in caught.value.hint


def test_subtitle_segmentation_reports_warnings(tmp_path: Path) -> None:
    path = tmp_path / "ep.srt"
    path.write_text(SRT + "\n3\n01:00:00,000 --> 01:00:01,000\nafter the credits\n", encoding="utf-8")
    seg = subtitle_segmentation(path, duration=30.0)
    assert seg.method == "subtitles" and seg.source == str(path) and len(seg.utterances) == 2
    assert seg.warnings == ["1 cue(s) start after the end of the video (0:30): skipped"]


def test_find_subtitles_beside_the_video(tmp_path: Path) -> None:
    video = tmp_path / "ep [1].mp4"
    video.write_bytes(b"x")
    assert find_subtitles(video) is None
    (tmp_path / "ep [1].fr.vtt").write_text("WEBVTT\n")
    assert find_subtitles(video) == tmp_path / "ep [1].fr.vtt"
    (tmp_path / "ep [1].srt").write_text("")
    assert find_subtitles(video) == tmp_path / "ep [1].srt"  # the exact name wins
    (tmp_path / "other.srt").write_text("")
    assert find_subtitles(tmp_path / "other.mkv") == tmp_path / "other.srt"


def test_a_malformed_srt_cue_is_skipped_and_counted_never_merged(tmp_path: Path) -> None:
    """pysubs2 appended a cue with a broken timestamp, number, control bytes and all, to the cue before it."""
    path = tmp_path / "broken.srt"
    path.write_bytes(
        b"1\n00:00:01,000 --> 00:00:02,000\nFirst.\n\n"
        b"2\n00:00:0x,000 --> 00:00:04,000\nbroken \x01\x02 cue\n\n"
        b"3\n00:00:05,000 -> 00:00:06,000\nno arrow\n\n"
        b"4\n00:00:07,000 --> 00:00:08,000\nFourth.\n"
        b"5\n00:00:09,000 --> 00:00:99,000\nno blank line before, and 99 seconds\n"
        b"6\n00:00:10,000 --> 00:00:11,000\nSixth, also without a blank line.\n"
    )
    cues, warnings = parse_subtitles(path)
    assert [(c.start, c.end, c.text) for c in cues] == [
        (1.0, 2.0, "First."),
        (7.0, 8.0, "Fourth."),
        (10.0, 11.0, "Sixth, also without a blank line."),
    ]
    assert warnings == ["3 malformed cue(s) (no valid 'start --> end' line): skipped"]
    seg = subtitle_segmentation(path, duration=30.0)
    assert seg.warnings == warnings and len(seg.utterances) == 3


def test_a_file_of_malformed_cues_only_is_refused_with_the_count(tmp_path: Path) -> None:
    path = tmp_path / "broken.srt"
    path.write_text("1\n00:00:aa,000 --> 00:00:02,000\nx\n\n2\n00:00:03,000 --> soon\ny\n", encoding="utf-8")
    with pytest.raises(SubtitleError, match=r"holds no subtitle cue \(2 malformed cue\(s\)"):
        parse_subtitles(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_unicode_subtitles_with_or_without_a_byte_order_mark_are_read(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "unicode.srt"
    path.write_bytes(SRT.replace("Hello there!", "Caf\u00e9 \u2013 \u65e5\u672c").encode(encoding))
    cues, _ = parse_subtitles(path)
    assert [c.text for c in cues] == ["Caf\u00e9 \u2013 \u65e5\u672c Hi.", "Two lines of one sentence."]


def test_damaged_utf16_is_called_utf16(tmp_path: Path) -> None:
    path = tmp_path / "damaged.srt"
    path.write_bytes("1\n00:00:01,000 --> 00:00:02,000\nHi\n".encode("utf-16") + b"\x00\xd8\x41\x00")  # lone surrogate
    with pytest.raises(SubtitleError, match="looks like UTF-16 text"):
        parse_subtitles(path)


ASS_NAMES = ASS.replace("Default,,0,0,0,,{\\pos", "Default,Monica,0,0,0,,{\\pos").replace(
    "Default,,0,0,0,,{\\an8}", "Default, Joey ,0,0,0,,{\\an8}"
)
VTT_VOICES = """WEBVTT

00:01.000 --> 00:02.500
<v Roger Bingham>Rock &amp; roll</v>

NOTE a note: not a cue

00:03.250 --> 00:05.000
<v.loud Mary>Louder</v>
"""
SRT_NAMES = """1
00:00:01,000 --> 00:00:02,500
ROSS: We were on a break!

2
00:00:03,250 --> 00:00:05,000
Rachel: No, we were not.

3
00:00:06,000 --> 00:00:07,000
Listen: this line has no speaker.

4
00:00:08,000 --> 00:00:09,000
Rachel: Fine. Note: it is not fine.

5
00:00:10,000 --> 00:00:11,000
- ROSS: Hi.
- Rachel: Hello.
"""


@pytest.mark.parametrize(
    ("suffix", "content", "expected"),
    [
        (".ass", ASS_NAMES, [("Monica", "Oh my God! What?"), ("Joey", "Second line")]),
        (".vtt", VTT_VOICES, [("Roger Bingham", "Rock & roll"), ("Mary", "Louder")]),
        (
            ".srt",
            SRT_NAMES,
            [
                ("ROSS", "We were on a break!"),
                ("Rachel", "No, we were not."),
                (None, "Listen: this line has no speaker."),
                ("Rachel", "Fine. Note: it is not fine."),
                (None, "Hi. Hello."),
            ],
        ),
    ],
)
def test_speakers_come_from_the_subtitles(tmp_path: Path, suffix: str, content: str, expected: list) -> None:
    path = tmp_path / f"named{suffix}"
    path.write_text(content, encoding="utf-8")
    cues, _ = parse_subtitles(path)
    assert [(c.speaker, c.text) for c in cues] == expected


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("ROSS: Hi.", ("ROSS", "Hi.")),
        ("DR. GREEN: Sit down.", ("DR. GREEN", "Sit down.")),
        ("MAN #2: Over here!", ("MAN #2", "Over here!")),
        ("Mary Ellen O'Brien: Hello.", ("Mary Ellen O'Brien", "Hello.")),
        ("ROSS : Salut.", ("ROSS", "Salut.")),
        ("\u00c9MILE: Bonjour.", ("\u00c9MILE", "Bonjour.")),
        ("Note: the shop is closed.", None),
        ("SIGN: Central Perk", None),
        ("So here's the thing: no.", None),
        ("One Two Three Four: too many words", None),
        ("ross: lower case", None),
        ("ROSS:no space", None),
        ("ROSS:", None),
        ("10:30 is when we meet", None),
        ("http://example.com", None),
        ("A Very Long Name Indeed Surely: x", None),
    ],
)
def test_name_prefix_takes_only_a_plausible_name(line: str, found: tuple | None) -> None:
    from meldctl.analysis.speakers import name_prefix

    assert name_prefix(line) == found
