"""`timeline.png`: a video's emotions over time, readable from a 30-second clip to a 25-minute episode.

From the top: one coloured strip with each utterance's top emotion, one with its sentiment, then a band per
emotion with each utterance's probability (pale bars) and its trend (a time-weighted moving average, the
line); on the right, each emotion's share of the speaking time. Time runs along the x axis as m:ss.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from meldctl.analysis.segments import format_time
from meldctl.analysis.timeline import Timeline, summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# One colour per MELD label, chosen to be told apart at a glance (and joy not a pale yellow on white).
EMOTION_COLOURS = {
    "neutral": "#9e9e9e",
    "surprise": "#fb8c00",
    "fear": "#8e24aa",
    "sadness": "#1e88e5",
    "joy": "#f4b400",
    "disgust": "#43a047",
    "anger": "#e53935",
}
SENTIMENT_COLOURS = {"neutral": "#bdbdbd", "positive": "#43a047", "negative": "#e53935"}
_FALLBACK = ("#00897b", "#6d4c41", "#3949ab", "#c0ca33", "#d81b60", "#546e7a", "#5e35b1")


def colours(labels: list[str], known: dict[str, str]) -> dict[str, str]:
    """A colour per label: MELD's own where known, others from a fixed palette."""
    spare = iter(_FALLBACK * (len(labels) // len(_FALLBACK) + 1))
    return {label: known.get(label) or next(spare) for label in labels}


def tick_step(duration: float, *, target: int = 12) -> float:
    """A round tick interval (seconds) that puts about `target` ticks across `duration`."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 180, 300, 600, 900, 1800, 3600):
        if duration / step <= target:
            return float(step)
    return 3600.0 * np.ceil(duration / 3600 / target)


def moving_average(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, grid: np.ndarray, window: float):
    """The duration-weighted mean of `values` over utterances overlapping `[t - window/2, t + window/2]`.

    Args:
        starts: `[N]` utterance starts, seconds.
        ends: `[N]` utterance ends.
        values: `[N]` one value per utterance.
        grid: `[G]` times to evaluate at.
        window: Width of the window, seconds.

    Returns:
        `[G]`, NaN where no utterance overlaps the window (no speech: the line breaks).
    """
    lo = grid[:, None] - window / 2  # [G, 1]
    hi = grid[:, None] + window / 2
    overlap = np.clip(np.minimum(ends[None, :], hi) - np.maximum(starts[None, :], lo), 0, None)  # [G, N]
    weight = overlap.sum(axis=1)  # [G]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, (overlap * values[None, :]).sum(axis=1) / weight, np.nan)  # [G]


def plot_timeline(timeline: Timeline, *, width: float = 14.0, dpi: int = 110) -> bytes:
    """The PNG of `timeline` (see the module docstring)."""
    from matplotlib.figure import Figure

    emotions = timeline.emotions
    rows = len(emotions)
    fig = Figure(figsize=(width, 2.2 + 0.55 * rows), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[0.5, 0.3, 0.55 * rows], width_ratios=[10, 1.3])
    strip = fig.add_subplot(grid[0, 0])
    mood = fig.add_subplot(grid[1, 0], sharex=strip)
    bands = fig.add_subplot(grid[2, 0], sharex=strip)
    shares = fig.add_subplot(grid[2, 1])
    key = fig.add_subplot(grid[0:2, 1])
    palette = colours(emotions, EMOTION_COLOURS)
    _top_strip(strip, timeline, palette)
    _sentiment_strip(mood, key, timeline)
    _bands(bands, timeline, palette)
    _shares(shares, timeline, palette)
    _time_axis(bands, timeline.duration)
    seg = timeline.segmentation
    fig.suptitle(
        f"{_name(timeline.video)}  ·  {format_time(timeline.duration)}  ·  {len(timeline.utterances)} utterances "
        f"({seg.method})",
        fontsize=12,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _name(video: str) -> str:
    return video.replace("\\", "/").rsplit("/", 1)[-1]


def _spans(timeline: Timeline) -> list[tuple[float, float]]:
    return [(u.start, u.duration) for u in timeline.utterances]


def _top_strip(ax: Axes, timeline: Timeline, palette: dict[str, str]) -> None:
    ax.broken_barh(_spans(timeline), (0, 1), facecolors=[palette[p.top_emotion] for p in timeline.predictions])
    _strip_style(ax, "top emotion")
    handles = [_patch(palette[e], e) for e in timeline.emotions]
    ax.legend(handles=handles, ncols=len(handles), loc="lower left", bbox_to_anchor=(0, 1.02), frameon=False,
              fontsize=9, handlelength=1.2, borderaxespad=0)  # fmt: skip


def _sentiment_strip(ax: Axes, key: Axes, timeline: Timeline) -> None:
    """The top sentiment of each utterance; its colour key goes in `key`, the empty corner on the right."""
    palette = colours(timeline.sentiments, SENTIMENT_COLOURS)
    ax.broken_barh(_spans(timeline), (0, 1), facecolors=[palette[p.top_sentiment] for p in timeline.predictions])
    _strip_style(ax, "sentiment")
    key.axis("off")
    handles = [_patch(palette[s], s) for s in timeline.sentiments]
    key.legend(handles=handles, title="sentiment", loc="lower left", frameon=False, fontsize=8, title_fontsize=8,
               handlelength=1.0, borderaxespad=0, alignment="left")  # fmt: skip


def _strip_style(ax: Axes, label: str) -> None:
    ax.set_ylim(0, 1)
    ax.set_yticks([0.5], [label], fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_facecolor("#f7f7f7")


def _patch(colour: str, label: str):  # noqa: ANN202
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, label=label)


def _bands(ax: Axes, timeline: Timeline, palette: dict[str, str]) -> None:
    """A band per emotion (first label on top): probability bars and their moving average."""
    emotions = timeline.emotions
    starts = np.array([u.start for u in timeline.utterances])  # [N]
    ends = np.array([u.end for u in timeline.utterances])  # [N]
    probs = np.array([[p.emotion[e] for e in emotions] for p in timeline.predictions]).reshape(-1, len(emotions))
    window = max(10.0, timeline.duration / 60)  # about 60 independent points across the video
    grid = np.linspace(0, timeline.duration, 600)  # [G]
    height = 0.85
    for row, emotion in enumerate(emotions):
        base = len(emotions) - 1 - row
        colour = palette[emotion]
        ax.axhspan(base, base + 1, color="#f7f7f7" if row % 2 else "white", zorder=0, lw=0)
        ax.bar(starts, probs[:, row] * height, width=ends - starts, bottom=base, align="edge", color=colour,
               alpha=0.35, linewidth=0, zorder=1)  # fmt: skip
        trend = moving_average(starts, ends, probs[:, row], grid, window)  # [G]
        ax.plot(grid, base + trend * height, color=colour, linewidth=1.6, zorder=2)
    ax.set_ylim(0, len(emotions))
    ax.set_yticks([len(emotions) - 0.5 - r for r in range(len(emotions))], emotions, fontsize=9)
    for label, emotion in zip(ax.get_yticklabels(), emotions, strict=True):
        label.set_color(palette[emotion])
        label.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(0, timeline.duration)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"probability per utterance (bars) and its {format_time(window)} moving average (line)",
        fontsize=9,
        loc="left",
        color="#555555",
    )


def _time_axis(ax: Axes, duration: float) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    step = tick_step(duration)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_time(x)))
    ax.set_xlabel("time (m:ss)", fontsize=9)


def _shares(ax: Axes, timeline: Timeline, palette: dict[str, str]) -> None:
    """Each emotion's share of the speaking time, as horizontal bars aligned with the bands."""
    shares = summary(timeline)
    n = len(shares)
    positions = [n - 0.5 - r for r in range(n)]
    ax.barh(positions, [s.time_share * 100 for s in shares], height=0.6, color=[palette[s.emotion] for s in shares])
    for y, share in zip(positions, shares, strict=True):
        ax.text(share.time_share * 100 + 2, y, f"{share.time_share:.0%}", va="center", fontsize=8)
    ax.set_ylim(0, n)
    ax.set_xlim(0, 140)  # room for the "100%" label
    ax.set_yticks([])
    ax.set_xticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title("share of time", fontsize=9, color="#555555")
