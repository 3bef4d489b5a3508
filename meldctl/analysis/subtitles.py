"""Subtitles (SRT, WebVTT, ASS/SSA) as utterances: cue times are the utterance times, cue text is the text,
and the speaker where the file names one (`speakers.py`).

MELD itself was cut from subtitle timestamps, so where a video has subtitles they are the best segmentation
there is: exact sentence boundaries, and the text as the writers meant it. SRT and WebVTT are read by
`subrip.py`, ASS/SSA (and the rarer formats) by pysubs2. Files are UTF-8, UTF-16 or UTF-32 (with or without
a byte-order mark for UTF-16), or Windows-1252.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path

from meldctl.analysis.segments import Segmentation, Utterance, format_time
from meldctl.analysis.speakers import assign_speakers, voice_names
from meldctl.analysis.subrip import is_webvtt, looks_like_srt, parse_cue_blocks
from meldctl.errors import AnalysisError, SubtitleError
from meldctl.media.names import SUBTITLE_SUFFIXES

_ASS_BLOCK = re.compile(r"\{[^}]*\}")  # {\i1}, {\pos(10,20)}: override tags (pysubs2 also turns <i> into them)
_MARKUP = re.compile(r"<[^>]*>")  # <i>, <v Speaker>, <c.yellow>, <00:00:03.500>: HTML-like and WebVTT tags
_SPEAKER_DASH = re.compile(r"^\s*[-\u2010-\u2015]+\s*")  # "- Hi." / "– Hi." lines of a two-speaker cue
_SPACES = re.compile(r"\s+")
_LINES = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # never spoken; a damaged file's bytes
_ASS_SECTION = re.compile(r"^\s*\[(?:Script Info|V4\+? Styles|Events)\]", re.MULTILINE | re.IGNORECASE)
# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


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


def cue_lines(text: str) -> list[tuple[bool, str]]:
    """A cue's lines as spoken: no override tags, markup, control characters or speaker dashes.

    Args:
        text: The cue as written (SRT/WebVTT markup, or ASS syntax: `{\\i1}` tags, `\\N` line breaks).

    Returns:
        Per non-empty line: whether it opened with a speaker dash (a new speaker's turn), and its text.
    """
    text = _ASS_BLOCK.sub("", text)
    text = text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    text = html.unescape(_MARKUP.sub("", text))
    out = []
    for line in _LINES.split(text):
        line = _CONTROL.sub("", line)
        dashed = _SPEAKER_DASH.match(line)
        spoken = _SPACES.sub(" ", line[dashed.end() :] if dashed else line).strip()
        if spoken:
            out.append((dashed is not None, spoken))
    return out


def clean_cue_text(text: str) -> str:
    """A cue's text as it is spoken (`cue_lines`), lines joined by spaces."""
    return " ".join(spoken for _, spoken in cue_lines(text))


def _decode(data: bytes, path: Path) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode_as(data[len(bom) :], encoding, path)
    # No BOM: UTF-16 text written by Windows tools has a zero byte beside nearly every ASCII character.
    head = data[:4096]
    if len(head) >= 4 and b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
            return _decode_as(data, "utf-16-le", path)
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
            return _decode_as(data, "utf-16-be", path)
        raise SubtitleError(f"{path} is not a subtitle file (it holds binary data)", hint=_HINT)
    for encoding in ("utf-8", "cp1252"):  # cp1252: what older SRT files were written in
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SubtitleError(f"{path} is not a subtitle file (not UTF-8, UTF-16 or Windows-1252 text)", hint=_HINT)


def _decode_as(data: bytes, encoding: str, path: Path) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = encoding.upper().replace("-SIG", "").replace("-LE", "").replace("-BE", "")
        raise SubtitleError(
            f"{path} looks like {name} text but byte {exc.start} is not valid {name}", hint=_HINT
        ) from None


_HINT = "pass an SRT, WebVTT or ASS file with --subtitles, or --segment asr to transcribe the speech instead"


def parse_subtitles(path: Path) -> tuple[list[Utterance], list[str]]:
    """Every dialogue cue of a subtitle file, in file order, times as written (not yet checked), with speakers
    where the file names them (`speakers.py`), and warnings about cues skipped as malformed.

    SRT and WebVTT are read by `subrip.py` (a malformed cue is skipped and counted, never merged into the one
    before); ASS/SSA and the rarer formats by pysubs2.

    Raises:
        SubtitleError: the file is missing, binary, not a subtitle format, or holds no cue.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubtitleError(f"cannot read subtitles {path}: {exc.strerror or exc}", hint=_HINT) from None
    text = _decode(data, path)
    if is_webvtt(text) or (looks_like_srt(text) and not _ASS_SECTION.search(text)):
        blocks = parse_cue_blocks(text)
        raw = [(cue.start, cue.end, cue.text, _one(voice_names(cue.text))) for cue in blocks.cues]
        malformed = blocks.malformed
    else:
        raw, malformed = _pysubs2_cues(text, path, _substation_format(text)), 0
    named = assign_speakers([cue_lines(text) for _, _, text, _ in raw], [speaker for *_, speaker in raw])
    cues = [
        Utterance(start, end, " ".join(lines), speaker)
        for (start, end, _, _), (speaker, lines) in zip(raw, named, strict=True)
    ]
    warnings = [f"{malformed} malformed cue(s) (no valid 'start --> end' line): skipped"] if malformed else []
    if not cues:
        detail = f" ({warnings[0].removesuffix(': skipped')})" if warnings else ""
        raise SubtitleError(f"{path} holds no subtitle cue{detail}", hint=_HINT)
    return cues, warnings


def _substation_format(text: str) -> str | None:
    """ "ass" or "ssa" for a SubStation file, also one without a styles section (pysubs2 recognises a file by
    that section, but players need none: the default style applies); None for the other formats."""
    if not _ASS_SECTION.search(text):
        return None
    return "ssa" if re.search(r"\[V4 Styles\]|^ScriptType:\s*v4\.00\s*$", text, re.IGNORECASE | re.MULTILINE) else "ass"


def _pysubs2_cues(text: str, path: Path, format_: str | None) -> list[tuple[float, float, str, str | None]]:
    import pysubs2

    try:
        subs = pysubs2.SSAFile.from_string(text, format_=format_)
        cues = [
            (_ms(event.start) / 1000, _ms(event.end) / 1000, str(event.text), str(event.name).strip() or None)
            for event in subs
            if not event.is_comment and not event.is_drawing
        ]
    # pysubs2's readers (XML for TTML, JSON, HTML-like SAMI, ...) fail on hostile input with their own errors and
    # with whatever a malformed line raises in them (ParseError, NotImplementedError, TypeError, ...): every one
    # of them means "not a subtitle file meldctl can read".
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, pysubs2.exceptions.FormatAutodetectionError):
            detail = "no known subtitle format"
        else:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SubtitleError(f"cannot parse subtitles {path}: {detail}", hint=_HINT) from None
    return cues


def _ms(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a cue time is {value!r}, not a number of milliseconds")
    return value


def _one(names: list[str]) -> str | None:
    return names[0] if names and len(set(names)) == 1 else None


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
            kept.append(replace(cue, start=max(cue.start, 0.0), end=min(cue.end, duration)))
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
    cues, malformed = parse_subtitles(path)
    utterances, warnings = check_cues(cues, duration)
    warnings = malformed + warnings
    if not utterances:
        raise AnalysisError(
            f"no cue of {path} can be used for this video (0:00-{format_time(duration)}): "
            + "; ".join(w.removesuffix(": skipped") for w in warnings),
            hint="are these the subtitles of this video? --segment asr transcribes the speech instead",
        )
    return Segmentation("subtitles", str(path), utterances, warnings)
