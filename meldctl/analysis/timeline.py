"""The result of analysing a video, and its pure serialisations: JSON, CSV, SRT, the per-emotion summary.

The picture is `plot.py`'s; `outputs.py` renders and writes every file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from meldctl.analysis.segments import Segmentation, Utterance

if TYPE_CHECKING:
    from meldctl.inference import Prediction


@dataclass
class Timeline:
    """Every utterance of a video with its prediction.

    Attributes:
        video: The video as given.
        duration: Its length in seconds.
        segmentation: How it was cut into utterances.
        model: `Predictor.describe()` of the checkpoint used.
        utterances: Sorted by start.
        predictions: One per utterance, same order.
        warnings: About the whole video (skipped cues, a missing stream).
        context: The dialogue context the classification used (`Predictor.context_window`): `past` and
            `future` utterances each one saw, whether `speakers` entered, whether any context was `used`.
        seconds: Time spent: segmentation, classification, total.
    """

    video: str
    duration: float
    segmentation: Segmentation
    model: dict[str, Any]
    utterances: list[Utterance]
    predictions: list[Prediction]
    warnings: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=lambda: {"past": 0, "future": 0, "speakers": False, "used": False})
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def emotions(self) -> list[str]:
        return list(self.model["labels"]["emotion"])

    @property
    def sentiments(self) -> list[str]:
        return list(self.model["labels"]["sentiment"])


@dataclass(frozen=True)
class Share:
    """One emotion's part of a video: by number of utterances and by time spoken."""

    emotion: str
    count: int
    count_share: float
    seconds: float
    time_share: float


def summary(timeline: Timeline, *, speaker: str | None | EllipsisType = ...) -> list[Share]:
    """Each emotion's share of the utterances (as top emotion), by count and by time, in label order.

    Args:
        timeline: The analysis.
        speaker: Only this speaker's utterances (None: those of no known speaker); all when left out.
    """
    counts = dict.fromkeys(timeline.emotions, 0)
    seconds = dict.fromkeys(timeline.emotions, 0.0)
    for utterance, prediction in zip(timeline.utterances, timeline.predictions, strict=True):
        if speaker is ... or utterance.speaker == speaker:
            counts[prediction.top_emotion] += 1
            seconds[prediction.top_emotion] += utterance.duration
    total_count, total_seconds = sum(counts.values()), sum(seconds.values())
    return [
        Share(
            emotion,
            counts[emotion],
            counts[emotion] / total_count if total_count else 0.0,
            seconds[emotion],
            seconds[emotion] / total_seconds if total_seconds else 0.0,
        )
        for emotion in timeline.emotions
    ]


def speakers(timeline: Timeline) -> list[str | None]:
    """The speakers of the timeline in order of first appearance; None last, for utterances of no known speaker.

    Empty when the subtitles name nobody.
    """
    named = list(dict.fromkeys(u.speaker for u in timeline.utterances if u.speaker is not None))
    if named and any(u.speaker is None for u in timeline.utterances):
        named.append(None)
    return named


def speaker_label(speaker: str | None) -> str:
    """How the outputs show a speaker: the name, or `(unknown)`."""
    return speaker if speaker is not None else "(unknown)"


def to_json(timeline: Timeline) -> dict[str, Any]:
    """What `timeline.json` holds (and `meldctl analyze --json` prints)."""
    from meldctl import __version__

    rows = []
    for number, (utterance, prediction) in enumerate(zip(timeline.utterances, timeline.predictions, strict=True), 1):
        row = {"index": number, "start": round(utterance.start, 3), "end": round(utterance.end, 3),
               "speaker": utterance.speaker}  # fmt: skip
        body = prediction.to_json(top_k=3)
        body.pop("clip", None)  # the span is in start/end
        rows.append({**row, **body})
    seg = timeline.segmentation
    return {
        "video": timeline.video,
        "duration": round(timeline.duration, 3),
        "segmentation": {"method": seg.method, "source": seg.source, "utterances": len(timeline.utterances)},
        "checkpoint": timeline.model["checkpoint"],
        "modalities": timeline.model["modalities"],
        "labels": timeline.model["labels"],
        "context": timeline.context,
        "summary": [vars(share) for share in summary(timeline)],
        "speakers": [
            {
                "speaker": speaker,
                "utterances": sum(1 for u in timeline.utterances if u.speaker == speaker),
                "summary": [vars(share) for share in summary(timeline, speaker=speaker)],
            }
            for speaker in speakers(timeline)
        ],
        "utterances": rows,
        "warnings": timeline.warnings,
        "seconds": timeline.seconds,
        "meldctl_version": __version__,
    }


def to_csv(timeline: Timeline) -> str:
    """One row per utterance: times, speaker (empty when unknown), text, top labels, every probability, warnings."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["index", "start", "end", "speaker", "text"]
    header += ["top_emotion", "top_emotion_p", "top_sentiment", "top_sentiment_p"]
    header += [f"emotion_{e}" for e in timeline.emotions] + [f"sentiment_{s}" for s in timeline.sentiments]
    writer.writerow([*header, "missing", "warnings"])
    for number, (utterance, p) in enumerate(zip(timeline.utterances, timeline.predictions, strict=True), 1):
        writer.writerow(
            [number, f"{utterance.start:.3f}", f"{utterance.end:.3f}", utterance.speaker or "", utterance.text or ""]
            + [p.top_emotion, f"{p.emotion[p.top_emotion]:.4f}", p.top_sentiment, f"{p.sentiment[p.top_sentiment]:.4f}"]
            + [f"{p.emotion[e]:.4f}" for e in timeline.emotions]
            + [f"{p.sentiment[s]:.4f}" for s in timeline.sentiments]
            + [";".join(p.missing), " | ".join(p.warnings)]
        )
    return buffer.getvalue()


def cue_text(utterance: Utterance, prediction: Prediction) -> str:
    """An SRT cue's text: the speaker when known, the top emotion and its probability, then what is said
    (`Ross: [joy 0.71] Hi!`; the `NAME:` prefix is how subtitles name a speaker, and meldctl reads it back)."""
    label = f"[{prediction.top_emotion} {prediction.emotion[prediction.top_emotion]:.2f}]"
    text = f"{label} {utterance.text}" if utterance.text else label
    return f"{utterance.speaker}: {text}" if utterance.speaker else text


def to_srt(timeline: Timeline) -> str:
    """Subtitles whose cues carry the top emotion: watch the video with them to check the timeline."""
    import pysubs2

    subs = pysubs2.SSAFile()
    for utterance, prediction in zip(timeline.utterances, timeline.predictions, strict=True):
        # Braces would be read back as ASS override tags and vanish from the cue.
        text = cue_text(utterance, prediction).replace("{", "(").replace("}", ")")
        subs.append(pysubs2.SSAEvent(start=round(utterance.start * 1000), end=round(utterance.end * 1000), text=text))
    return subs.to_string("srt")
