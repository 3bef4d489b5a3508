"""Subtitles (SRT, WebVTT, ASS/SSA) as utterances: cue times are the utterance times, cue text is the text.

MELD itself was cut from subtitle timestamps, so where a video has subtitles they are the best segmentation
there is: exact sentence boundaries, and the text as the writers meant it. Parsing is pysubs2's.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from meldctl.analysis.segments import Segmentation, Utterance, format_time
from meldctl.errors import AnalysisError, SubtitleError
from meldctl.media.names import SUBTITLE_SUFFIXES

_ASS_BLOCK = re.compile(r"\{[^}]*\}")  # {\i1}, {\pos(10,20)}: override tags (pysubs2 also turns <i> into them)
_MARKUP = re.compile(r"<[^>]*>")  # <i>, <v Speaker>, <c.yellow>, <00:00:03.500>: HTML-like and WebVTT tags
_SPEAKER_DASH = re.compile(r"^\s*[-\u2010-\u2015]+\s*")  # "- Hi." / "– Hi." lines of a two-speaker cue
_SPACES = re.compile(r"\s+")


def find_subtitles(video: Path) -> Path | None:
    """The subtitle file beside `video` with the same stem (`ep1.srt`, or `ep1.en.srt`), if there is one."""
    for suffix in SUBTITLE_SUFFIXES:
        exact = video.with_suffix(suffix)
        if exact.is_file():
            return exact
    tagged = sorted(p for p in video.parent.glob(f"{_glob_escape(video.stem)}.*") if p.suffix in SUBTITLE_SUFFIXES)
    return tagged[0] if tagged else None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def clean_cue_text(text: str) -> str:
    """A cue's text as it is spoken: no override tags, markup or speaker dashes, lines joined by spaces.

    Args:
        text: The cue as pysubs2 holds it (ASS syntax: `{\\i1}` tags, `\\N` line breaks).
    """
    text = _ASS_BLOCK.sub("", text)
    text = text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    text = html.unescape(_MARKUP.sub("", text))
    lines = [_SPEAKER_DASH.sub("", line) for line in text.splitlines()]
    return _SPACES.sub(" ", " ".join(lines)).strip()


def _decode(data: bytes, path: Path) -> str:
    if b"\x00" in data[:4096]:
        raise SubtitleError(f"{path} is not a subtitle file (it holds binary data)", hint=_HINT)
    for encoding in ("utf-8-sig", "cp1252"):  # cp1252: what older SRT files were written in
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SubtitleError(f"{path} is not a subtitle file (not UTF-8 or Windows-1252 text)", hint=_HINT)


_HINT = "pass an SRT, WebVTT or ASS file with --subtitles, or --segment asr to transcribe the speech instead"


def parse_subtitles(path: Path) -> list[Utterance]:
    """Every dialogue cue of a subtitle file, in file order, times as written (not yet checked).

    Raises:
        SubtitleError: the file is missing, binary, not a subtitle format, or holds no cue.
    """
    import pysubs2

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubtitleError(f"cannot read subtitles {path}: {exc.strerror or exc}", hint=_HINT) from None
    text = _decode(data, path)
    try:
        subs = pysubs2.SSAFile.from_string(text)
    except (pysubs2.exceptions.Pysubs2Error, ValueError, KeyError, IndexError) as exc:
        detail = "no known subtitle format" if isinstance(exc, pysubs2.exceptions.FormatAutodetectionError) else exc
        raise SubtitleError(f"cannot parse subtitles {path}: {detail}", hint=_HINT) from None
    cues = [
        Utterance(event.start / 1000, event.end / 1000, clean_cue_text(event.text))
        for event in subs
        if not event.is_comment and not event.is_drawing
    ]
    if not cues:
        raise SubtitleError(f"{path} holds no subtitle cue", hint=_HINT)
    return cues


def check_cues(cues: list[Utterance], duration: float) -> tuple[list[Utterance], list[str]]:
    """Keep the cues that can be utterances of a video `duration` seconds long, sorted, and say what was dropped.

    Cues past the end are skipped (wrong file, or a longer cut of the episode), cues running past it are cut
    at the end, and cues with no text or with an end before their start are skipped.

    Returns:
        The utterances sorted by start, and one warning per kind of cue dropped.
    """
    kept, late, reversed_, empty = [], 0, 0, 0
    for cue in cues:
        if cue.end <= cue.start:
            reversed_ += 1
        elif not cue.text:
            empty += 1
        elif cue.start >= duration:
            late += 1
        else:
            kept.append(Utterance(max(cue.start, 0.0), min(cue.end, duration), cue.text))
    warnings = []
    if late:
        warnings.append(f"{late} cue(s) start after the end of the video ({format_time(duration)}): skipped")
    if reversed_:
        warnings.append(f"{reversed_} cue(s) end before they start: skipped")
    if empty:
        warnings.append(f"{empty} cue(s) hold no text once markup is removed: skipped")
    return sorted(kept, key=lambda u: (u.start, u.end)), warnings


def subtitle_segmentation(path: Path, duration: float) -> Segmentation:
    """Utterances from a subtitle file for a video of `duration` seconds.

    Raises:
        SubtitleError: the file cannot be parsed.
        AnalysisError: no cue falls within the video.
    """
    cues = parse_subtitles(path)
    utterances, warnings = check_cues(cues, duration)
    if not utterances:
        raise AnalysisError(
            f"no cue of {path} can be used for this video (0:00-{format_time(duration)}): "
            + "; ".join(w.removesuffix(": skipped") for w in warnings),
            hint="are these the subtitles of this video? --segment asr transcribes the speech instead",
        )
    return Segmentation("subtitles", str(path), utterances, warnings)
