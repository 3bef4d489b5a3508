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
    cues = parse_subtitles(path)
    assert [(c.start, c.end) for c in cues] == [(1.0, 2.5), (3.25, 5.0)]
    assert [c.text for c in cues] == texts


def test_windows_1252_subtitles_are_read(tmp_path: Path) -> None:
    path = tmp_path / "old.srt"
    path.write_bytes(
        "1\r\n00:00:01,000 --> 00:00:02,000\r\nCaf\u00e9 cr\u00e8me \u2013 s'il vous pla\u00eet\r\n".encode("cp1252")
    )
    assert parse_subtitles(path)[0].text == "Caf\u00e9 cr\u00e8me \u2013 s'il vous pla\u00eet"


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
