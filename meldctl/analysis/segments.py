"""Utterances (time spans with their text) and the pure functions that shape them.

Every segmentation (subtitles, speech recognition, voice activity) ends in a sorted list of `Utterance`s;
classification and the outputs read nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

# Where a recogniser's word ends a sentence.
_SENTENCE_END = (".", "?", "!", "…")


@dataclass(frozen=True)
class Utterance:
    """One span of the video to classify.

    Attributes:
        start: Seconds from the start of the video.
        end: Seconds, > start.
        text: What is said, or None when the segmentation knows no text (voice activity).
        speaker: Who says it, where the subtitles name them (`subtitles.py`); None when unknown.
    """

    start: float
    end: float
    text: str | None = None
    speaker: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Segmentation:
    """How a video was cut into utterances.

    Attributes:
        method: "subtitles", "asr" or "vad".
        source: The subtitle file, the speech-recognition model, or the voice-activity model.
        utterances: Sorted by start.
        warnings: What the user should know (skipped cues, ...).
        seconds: Time the segmentation took.
    """

    method: str
    source: str
    utterances: list[Utterance]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Word:
    """A recognised word with its times (seconds)."""

    start: float
    end: float
    text: str


def format_time(seconds: float, *, decimals: int = 0) -> str:
    """Seconds -> `m:ss` (or `h:mm:ss` from an hour on), as a video player shows them."""
    seconds = max(seconds, 0.0)
    whole = int(seconds)
    fraction = f"{seconds - whole:.{decimals}f}"[1:] if decimals else ""
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}{fraction}"
    return f"{minutes}:{secs:02d}{fraction}"


def sentences(words: Sequence[Word], *, max_gap: float = 0.8, max_seconds: float = 15.0) -> list[Utterance]:
    """Group recognised words into sentence-like utterances.

    A sentence ends at a word ending in `. ? ! …`, at a pause longer than `max_gap` (a speaker who stops
    without punctuation, or another speaker), and before it would grow longer than `max_seconds` (the
    model reads only the first seconds of audio, and a timeline wants one colour per sentence).

    Args:
        words: In time order.
        max_gap: Seconds of silence between two words that end an utterance.
        max_seconds: Longest utterance.
    """
    out: list[Utterance] = []
    current: list[Word] = []
    for word in words:
        if not word.text.strip():
            continue
        if current and (word.start - current[-1].end > max_gap or word.end - current[0].start > max_seconds):
            out.append(_joined(current))
            current = []
        current.append(word)
        if word.text.strip().endswith(_SENTENCE_END):
            out.append(_joined(current))
            current = []
    if current:
        out.append(_joined(current))
    return out


def _joined(words: list[Word]) -> Utterance:
    text = " ".join(w.text.strip() for w in words)
    return Utterance(words[0].start, max(words[-1].end, words[0].start + 0.01), text)


def merge_short(
    utterances: Sequence[Utterance], *, min_seconds: float = 1.0, max_gap: float = 0.3, max_seconds: float = 15.0
) -> list[Utterance]:
    """Join an utterance shorter than `min_seconds` to the next one when they are spoken without a pause.

    "No. No. No way." is one utterance to a listener; "Okay." followed by a pause stays on its own.

    Args:
        utterances: Sorted by start.
        min_seconds: Shorter utterances are merged.
        max_gap: Largest pause, in seconds, across which two utterances are merged.
        max_seconds: A merge never makes an utterance longer than this.
    """
    out: list[Utterance] = []
    for utterance in utterances:
        if out:
            previous = out[-1]
            close = utterance.start - previous.end <= max_gap
            if previous.duration < min_seconds and close and utterance.end - previous.start <= max_seconds:
                speaker = previous.speaker if previous.speaker == utterance.speaker else None
                out[-1] = Utterance(previous.start, utterance.end, _concat(previous.text, utterance.text), speaker)
                continue
        out.append(utterance)
    return out


def _concat(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    return f"{a} {b}"


def clamp(utterances: Sequence[Utterance], duration: float) -> list[Utterance]:
    """Utterances cut to `[0, duration]`; those left empty are dropped."""
    out = [replace(u, start=max(u.start, 0.0), end=min(u.end, duration)) for u in utterances]
    return [u for u in out if u.end > u.start]


def snap_to_speech(utterances: Sequence[Utterance], speech: Sequence[tuple[float, float]]) -> list[Utterance]:
    """Trim each utterance to the voice-activity spans it overlaps.

    A recogniser's word times drift into the silence around a sentence (Whisper often stretches the last word
    of a sentence up to the next one); where the voice-activity detector heard speech is the better edge.

    Args:
        utterances: Sorted by start.
        speech: (start, end) seconds of speech, sorted, not overlapping.
    """
    out = []
    for utterance in utterances:
        inside = [(a, b) for a, b in speech if a < utterance.end and b > utterance.start]
        if not inside:
            out.append(utterance)
            continue
        start, end = max(utterance.start, inside[0][0]), min(utterance.end, inside[-1][1])
        out.append(replace(utterance, start=start, end=end) if end > start else utterance)
    return out
