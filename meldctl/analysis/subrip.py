"""SRT and WebVTT cues, read by meldctl itself: a cue whose timing line is broken is skipped and counted, never
merged into the cue before it (pysubs2's reader appends such a cue, number, broken timing and all, to the
previous cue's text), and WebVTT voice spans (`<v Name>`) are kept for the speaker.

A file is a sequence of blocks separated by blank lines. A cue block is an optional identifier line (SRT's
number, WebVTT's cue id), a timing line `start --> end` (anything after `end`, WebVTT's settings or SRT's
coordinates, is ignored) and its text lines. A block whose first two lines hold no `-->` is a malformed cue;
WebVTT's header, NOTE, STYLE and REGION blocks are no cues. Inside a block, a line holding `-->` starts the next
cue (a blank line was left out) or, when it is no valid timing line, a malformed cue whose text is dropped; the
identifier line just before it belongs to it. Neither format lets cue text hold `-->`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TIME = r"(?:(\d{1,9}):)?([0-5]?\d):([0-5]\d)(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")
_SRT_TIME = re.compile(r"\s*\d+:\d+:\d+[,.]\d+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # not str.splitlines: \x85, \x1c, \u2028 ... are cue text, not breaks
_WEBVTT_HEADER = re.compile(r"^WEBVTT(?:[ \t].*)?$")
_WEBVTT_BLOCKS = re.compile(r"^(?:NOTE|STYLE|REGION)(?:[ \t].*)?$")


@dataclass(frozen=True)
class RawCue:
    """A cue as written: times in seconds, the text lines joined by newlines, markup and all."""

    start: float
    end: float
    text: str


@dataclass
class CueBlocks:
    """The cues of a file, in file order, and how many cue blocks were malformed (skipped)."""

    cues: list[RawCue] = field(default_factory=list)
    malformed: int = 0


def is_webvtt(text: str) -> bool:
    """Whether `text` (BOM removed) is a WebVTT file: its first line starts with `WEBVTT`."""
    first = _LINE_BREAK.split(text.lstrip("\ufeff"), maxsplit=1)[0]
    return bool(_WEBVTT_HEADER.match(first))


def looks_like_srt(text: str) -> bool:
    """Whether `text` holds a `-->` line or a line opening with an SRT time (`00:00:01,000`), as SRT files do
    (and ASS, MicroDVD, ... do not): such a file is read here, where its broken timing lines are counted."""
    return any("-->" in line or _SRT_TIME.match(line) for line in _LINE_BREAK.split(text))


def parse_timing(line: str) -> tuple[float, float] | None:
    """`00:00:01,000 --> 00:00:02,500` (SRT) or `00:01.000 --> 00:02.500 align:start` (WebVTT) -> seconds."""
    match = _TIMING.match(line)
    if match is None:
        return None
    groups = match.groups()
    return _seconds(*groups[:4]), _seconds(*groups[4:])


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str | None) -> float:
    millis = int(fraction.ljust(3, "0")) if fraction else 0  # ",5" is half a second
    # Whole milliseconds, divided once: the same float as pysubs2's and the timeline writer's `round(t * 1000)`.
    return (((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + millis) / 1000


def parse_cue_blocks(text: str) -> CueBlocks:
    """Every cue of an SRT or WebVTT file (`text` decoded), and the number of malformed cues skipped."""
    lines = _LINE_BREAK.split(text.lstrip("\ufeff"))
    webvtt = bool(lines) and bool(_WEBVTT_HEADER.match(lines[0]))
    out = CueBlocks()
    for number, block in enumerate(_blocks(lines)):
        if webvtt and number == 0 and _WEBVTT_HEADER.match(block[0]):
            # The header's own lines are metadata; a cue written straight below it (no blank line) still counts.
            arrows = [k for k, line in enumerate(block) if "-->" in line]
            if not arrows:
                continue
            block = block[max(arrows[0] - 1, 1) :]
        elif webvtt and "-->" not in block[0] and _WEBVTT_BLOCKS.match(block[0]):
            continue
        _read_block(block, out)
    return out


def _blocks(lines: list[str]) -> list[list[str]]:
    blocks, current = [], []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _read_block(block: list[str], out: CueBlocks) -> None:
    if "-->" not in block[0] and (len(block) < 2 or "-->" not in block[1]):
        out.malformed += 1  # a cue whose timing line is missing or mangled past recognition
        return
    timing: tuple[float, float] | None = None
    body: list[str] = []
    started = False  # whether a timing line (valid or not) has been met

    def close() -> None:
        if timing is not None:
            out.cues.append(RawCue(timing[0], timing[1], "\n".join(body)))

    for line in block:
        if "-->" in line:
            if body and _is_identifier(body[-1]):
                body.pop()  # the next cue's number, written without the blank line before it
            close()
            started, body = True, []
            timing = parse_timing(line)
            if timing is None:
                out.malformed += 1
        elif started:
            body.append(line)
    close()


def _is_identifier(line: str) -> bool:
    return line.strip().isdigit()
