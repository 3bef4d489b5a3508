"""Run a speech detector over a long audio track window by window, so memory stays flat in its length.

A recogniser (or a voice-activity model) given a whole episode would hold all of it, and its features, in
memory. Instead the track is read through one FFmpeg stream in windows of a few minutes; each window's
utterances are kept except those near its end, which may be cut off by it, and the next window starts
where the kept ones end, so those are found again whole.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from meldctl.analysis.segments import Utterance
from meldctl.media.stream import AudioReader, VideoInfo

Detector = Callable[[np.ndarray, float], list[Utterance]]
"""float32 mono samples `[n]` at 16 kHz and the time of the first one -> utterances in absolute seconds."""

SAMPLE_RATE = 16000  # what Whisper and silero-vad take


def next_window_start(found: list[Utterance], start: float, window_end: float, tail: float) -> tuple[int, float]:
    """How many of a window's utterances to keep, and where the next window starts.

    Utterances ending in the window's last `tail` seconds may run on past it: they are dropped and found
    again by the next window, which starts just before the first of them (or after the last kept one).

    Args:
        found: The window's utterances, sorted by start.
        start: Start of the window, seconds.
        window_end: End of the window, seconds.
        tail: Seconds at the end of the window whose utterances are not trusted.

    Returns:
        (number of utterances to keep, start of the next window); the next start is always past `start`.
    """
    limit = window_end - tail
    kept = 0
    while kept < len(found) and found[kept].end <= limit:
        kept += 1
    if kept < len(found):
        following = found[kept].start - 0.2  # a little before: word starts are approximate
        upcoming = max(following, found[kept - 1].end) if kept else following
    else:
        upcoming = max(limit, found[-1].end) if found else limit
    return kept, max(upcoming, start + 1.0)


def detect_windowed(
    info: VideoInfo,
    detect: Detector,
    *,
    window_s: float = 180.0,
    tail_s: float = 15.0,
    progress: Callable[[float, float], None] | None = None,
) -> list[Utterance]:
    """Utterances of the whole audio track of `info`, found window by window.

    Args:
        info: The file, from `probe_video` (it must have audio).
        detect: The detector run on each window.
        window_s: Seconds of audio per window.
        tail_s: Seconds at each window's end whose utterances are found again by the next window.
        progress: Called with (seconds done, total seconds) after each window.
    """
    from meldctl.media.audio import pcm16_to_float

    out: list[Utterance] = []
    start = 0.0
    if progress is not None:
        progress(0.0, info.duration_s)
    with AudioReader(info.path, sample_rate=SAMPLE_RATE, offset_s=info.audio_offset_s) as reader:
        while True:
            reader.release(start)
            samples = reader.read(start, start + window_s)
            final = reader.exhausted and len(samples) < round(window_s * SAMPLE_RATE)
            found = detect(pcm16_to_float(samples).numpy(), start) if len(samples) else []  # [n] float32
            found = sorted((u for u in found if u.end > u.start), key=lambda u: (u.start, u.end))
            if final:
                out += found
                break
            kept, start = next_window_start(found, start, start + window_s, tail_s)
            out += found[:kept]
            if progress is not None:
                progress(min(start, info.duration_s), info.duration_s)
    if progress is not None:
        progress(info.duration_s, info.duration_s)
    return out
