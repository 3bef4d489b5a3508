"""`timeline.png`: a video's emotions over time, readable from a 30-second clip to a 25-minute episode.

From the top: one coloured strip with each utterance's top emotion, one with its sentiment, then a band per
emotion with each utterance's probability (pale bars) and its trend (a time-weighted moving average, the
line); on the right, each emotion's share of the speaking time. Time runs along the x axis as m:ss.

Split by speaker (`by_speaker=True`, `meldctl analyze --by-speaker`): the top-emotion strip has one lane per
speaker, and each speaker gets a panel of their own with the trend of every emotion over their utterances and,
on the right, their share of time per emotion.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from meldctl.analysis.segments import format_time
from meldctl.analysis.timeline import Share, Timeline, speaker_label, speakers, summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from meldctl.analysis.segments import Utterance
    from meldctl.inference import Prediction

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
MAX_SPEAKER_PANELS = 12  # the speakers with the most speaking time get a panel; the title says how many are left
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


def plot_timeline(timeline: Timeline, *, by_speaker: bool = False, width: float = 14.0, dpi: int = 110) -> bytes:
    """The PNG of `timeline` (see the module docstring).

    Args:
        timeline: The analysis.
        by_speaker: One lane and one panel per speaker; the whole-video picture when no speaker is known.
        width: Inches.
        dpi: Dots per inch.
    """
    who = speakers(timeline) if by_speaker else []
    fig = _speaker_figure(timeline, who, width, dpi) if who else _figure(timeline, width, dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _figure(timeline: Timeline, width: float, dpi: int) -> Figure:
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
    _shares(shares, summary(timeline), palette)
    _time_axis(bands, timeline.duration)
    fig.suptitle(_title(timeline), fontsize=12)
    return fig


def _title(timeline: Timeline, extra: str = "") -> str:
    seg = timeline.segmentation
    return (
        f"{_name(timeline.video)}  ·  {format_time(timeline.duration)}  ·  {len(timeline.utterances)} utterances "
        f"({seg.method}){extra}"
    )


def _speaker_figure(timeline: Timeline, who: list[str | None], width: float, dpi: int) -> Figure:
    """A lane per speaker in the top-emotion strip, then a panel per speaker (see the module docstring)."""
    from matplotlib.figure import Figure

    spoken = {s: sum(u.duration for u in timeline.utterances if u.speaker == s) for s in who}
    shown = sorted(who, key=lambda s: -spoken[s])[:MAX_SPEAKER_PANELS]
    shown.sort(key=who.index)  # panels in order of first appearance
    n = len(shown)
    fig = Figure(figsize=(width, 1.4 + 0.3 * n + 1.2 * n), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(1 + n, 2, height_ratios=[0.3 * n + 0.4] + [1.2] * n, width_ratios=[10, 1.3])
    lanes = fig.add_subplot(grid[0, 0])
    palette = colours(timeline.emotions, EMOTION_COLOURS)
    _speaker_lanes(lanes, timeline, shown, palette)
    fig.add_subplot(grid[0, 1]).axis("off")
    panel = lanes
    for row, speaker in enumerate(shown, 1):
        mine = [(u, p) for u, p in zip(timeline.utterances, timeline.predictions, strict=True) if u.speaker == speaker]
        panel = fig.add_subplot(grid[row, 0], sharex=lanes)
        _trends(panel, [u for u, _ in mine], [p for _, p in mine], timeline, palette)
        panel.set_ylabel(f"{speaker_label(speaker)}\n({len(mine)})", fontsize=9, rotation=0, ha="right", va="center")
        if row < n:
            panel.tick_params(axis="x", labelbottom=False)
        _shares(fig.add_subplot(grid[row, 1]), summary(timeline, speaker=speaker), palette)
    _time_axis(panel, timeline.duration)
    left = len(who) - n
    fig.suptitle(_title(timeline, f"  ·  {left} more speaker(s) not shown" if left else ""), fontsize=12)
    return fig


def _speaker_lanes(ax: Axes, timeline: Timeline, shown: list[str | None], palette: dict[str, str]) -> None:
    """The top emotion of each utterance, one lane per speaker (first speaker on top)."""
    n = len(shown)
    for lane, speaker in enumerate(shown):
        mine = [(u, p) for u, p in zip(timeline.utterances, timeline.predictions, strict=True) if u.speaker == speaker]
        ax.broken_barh([(u.start, u.duration) for u, _ in mine], (n - 1 - lane + 0.1, 0.8),
                       facecolors=[palette[p.top_emotion] for _, p in mine])  # fmt: skip
    ax.set_ylim(0, n)
    ax.set_yticks([n - 0.5 - lane for lane in range(n)], [speaker_label(s) for s in shown], fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_facecolor("#f7f7f7")
    handles = [_patch(palette[e], e) for e in timeline.emotions]
    ax.legend(handles=handles, ncols=len(handles), loc="lower left", bbox_to_anchor=(0, 1.02), frameon=False,
              fontsize=9, handlelength=1.2, borderaxespad=0)  # fmt: skip


def _trends(
    ax: Axes, utterances: list[Utterance], predictions: list[Prediction], timeline: Timeline, palette: dict[str, str]
) -> None:
    """One speaker's panel: each emotion's probability over their utterances, as a moving average (lines)."""
    starts = np.array([u.start for u in utterances])  # [N]
    ends = np.array([u.end for u in utterances])  # [N]
    window = max(20.0, timeline.duration / 40)  # one speaker's utterances are sparser than the whole video's
    grid = np.linspace(0, timeline.duration, 600)  # [G]
    for emotion in timeline.emotions:
        values = np.array([p.emotion[emotion] for p in predictions])  # [N]
        ax.plot(grid, moving_average(starts, ends, values, grid, window), color=palette[emotion], linewidth=1.4)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.5, 1], ["0", ".5", "1"], fontsize=7)
    ax.set_xlim(0, timeline.duration)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


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


def _shares(ax: Axes, shares: list[Share], palette: dict[str, str]) -> None:
    """Each emotion's share of the speaking time, as horizontal bars aligned with the bands."""
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
