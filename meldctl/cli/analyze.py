"""`meldctl analyze`: a whole video -> utterances -> an emotion timeline (JSON, CSV, SRT, PNG)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_checkpoint, resolve_settings


class Segment(StrEnum):
    auto = "auto"
    subtitles = "subtitles"
    asr = "asr"
    vad = "vad"


def default_out_dir(video: Path) -> Path:
    """`VIDEO_STEM.meldctl/` beside the video."""
    return video.parent / f"{video.stem}.meldctl"


def analyze(
    video: Annotated[Path, typer.Argument(help="The video (any container FFmpeg reads).")],
    subtitles: Annotated[
        Path | None, typer.Option(help="SRT, WebVTT or ASS file (default: one beside VIDEO with its name).")
    ] = None,
    segment: Annotated[
        Segment,
        typer.Option(
            help="Utterances from subtitles, speech recognition (asr) or voice activity (vad); auto: "
            "subtitles when there are some, else asr for a checkpoint that reads text, else vad."
        ),
    ] = Segment.auto,  # fmt: skip
    asr_model: Annotated[
        str | None,
        typer.Option(help="faster-whisper model name (downloaded when online) or folder (default: bundled tiny.en)."),
    ] = None,
    ckpt: Annotated[
        Path | None, typer.Option(help="Checkpoint (default: setting, else newest runs/*/best.pt).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: VIDEO_STEM.meldctl/ beside VIDEO).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Utterances per forward pass.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print timeline.json on stdout.")] = False,
) -> None:
    """Cut a whole video into utterances and classify each: an emotion timeline (timeline.json, .csv, .srt, .png).

    Example: meldctl analyze episode.mp4 --ckpt runs/best/best.pt (uses episode.srt when it is there).
    """
    if subtitles is not None and segment in (Segment.asr, Segment.vad):
        raise typer.BadParameter(f"--subtitles cannot be used with --segment {segment.value}", param_hint="--subtitles")
    path, origin = resolve_checkpoint(ckpt)
    settings = resolve_settings(train={"device": device})
    from meldctl.analysis.pipeline import analyze as analyze_video
    from meldctl.analysis.timeline import summary, to_json, write_outputs
    from meldctl.cli.analyze_progress import AnalyzeProgress
    from meldctl.inference import Predictor

    with AnalyzeProgress(console) as progress:
        timeline = analyze_video(
            video,
            lambda: Predictor.from_path(path, settings.train.device),
            segment=segment.value,
            subtitles=subtitles,
            asr_model=asr_model,
            batch_size=batch_size,
            progress=progress,
        )
    files = write_outputs(timeline, out or default_out_dir(video))
    console.print(f"[dim]checkpoint: {escape(str(path))} ({origin})[/]", soft_wrap=True)
    for warning in timeline.warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    if as_json:
        print_json(to_json(timeline))
    else:
        console.print(_table(summary(timeline), timeline))
    console.print(f"Wrote {', '.join(escape(str(p)) for p in files.values())}", soft_wrap=True)


def _table(shares: list, timeline) -> Table:  # noqa: ANN001
    seg = timeline.segmentation
    table = Table(title=f"{timeline.video}: {len(timeline.utterances)} utterances from {seg.method}")
    for column in ("emotion", "utterances", "share (count)", "seconds", "share (time)"):
        table.add_column(column, justify="left" if column == "emotion" else "right")
    for share in shares:
        table.add_row(
            share.emotion,
            str(share.count),
            f"{share.count_share:.0%}",
            f"{share.seconds:.1f}",
            f"{share.time_share:.0%}",
        )
    return table
