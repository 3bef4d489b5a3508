"""`meldctl analyze FOLDER`: every video of a folder with one model load, a line per video, a summary table.

This is also what each instance of `analyze --remote`'s Processing job runs on its share of the videos.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_checkpoint, resolve_settings


@dataclass(frozen=True)
class AnalyzeOptions:
    """The options of a local `meldctl analyze`, of one video or a folder of them.

    Attributes:
        subtitles: The subtitle file of one video; for a folder, a folder with the subtitles at the videos' paths
            (default: beside the videos).
        segment: auto, subtitles, asr or vad.
        asr_model: faster-whisper model for ASR.
        device: auto, cpu or cuda.
        batch_size: Utterances per forward.
        as_json: JSON on stdout.
        by_speaker: One panel per speaker in timeline.png.
        context: Dialogue context: "full" (the checkpoint's window), "causal" (past only) or "none".
    """

    subtitles: Path | None
    segment: str
    asr_model: str | None
    device: str | None
    batch_size: int
    as_json: bool
    by_speaker: bool = False
    context: str = "full"


def context_warnings(requested: str, uses_context: bool) -> list[str]:
    """What to tell the user when --causal asks for a dialogue context that the checkpoint does not have."""
    if requested == "causal" and not uses_context:
        return ["this checkpoint was trained without dialogue context: --causal changes nothing"]
    return []


def analyze_folder(folder: Path, out: Path, ckpt: Path | None, options: AnalyzeOptions) -> None:
    """Analyse the videos under `folder` that have no timeline in `out` yet; exit 1 when every one tried failed.

    Args:
        folder: The videos (any depth); `out/<video without extension>/timeline.*` mirrors their paths.
        out: The output folder; its `_meldctl/JOB/HOST.jsonl` is this run's report.
        ckpt: A checkpoint, or a folder holding best.pt or a training job's model.tar.gz.
        options: The other options.
    """
    from meldctl.inference import Predictor
    from meldctl.jobs.processing import analyze_share, find_checkpoint, report_path, this_instance

    if options.subtitles is not None and not options.subtitles.is_dir():
        raise typer.BadParameter(
            f"{options.subtitles}: with a folder of videos, give a folder of subtitles", param_hint="--subtitles"
        )
    path, origin = resolve_checkpoint(ckpt)
    settings = resolve_settings(train={"device": options.device})
    instance = this_instance()
    with tempfile.TemporaryDirectory(prefix="meldctl-ckpt-") as scratch:
        checkpoint = find_checkpoint(path, Path(scratch))

        def load() -> Predictor:
            console.print(f"[dim]checkpoint: {escape(str(checkpoint))} ({origin})[/]", soft_wrap=True)
            predictor = Predictor.from_path(checkpoint, settings.train.device)
            for warning in context_warnings(options.context, predictor.uses_context):
                console.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
            return predictor

        outcomes = analyze_share(
            folder, out, load, subtitles_dir=options.subtitles, segment=options.segment, asr_model=options.asr_model,
            batch_size=options.batch_size, by_speaker=options.by_speaker, context=options.context, instance=instance,
            on_outcome=_line,
        )  # fmt: skip
    report = report_path(out, instance)
    if options.as_json:
        print_json({"out": out, "report": report, "videos": [o.as_json() for o in outcomes]})
    else:
        console.print(_table(outcomes, folder))
    console.print(f"Report: {escape(str(report))}", soft_wrap=True)
    tried = [o for o in outcomes if o.status != "skipped"]
    if tried and all(o.status == "failed" for o in tried):
        raise typer.Exit(1)


def _line(outcome, position: int, total: int) -> None:  # noqa: ANN001
    """One plain line per video: a job's log keeps it."""
    what = {
        "done": f"done, {outcome.utterances} utterances in {outcome.seconds:.1f} s" if outcome.seconds else "done",
        "skipped": "skipped: its timeline is already there",
        "failed": f"failed: {outcome.error}",
    }[outcome.status]
    console.print(f"[{position}/{total}] {outcome.video}: {what}", markup=False, highlight=False, soft_wrap=True)


def _table(outcomes: list, folder: Path) -> Table:
    counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "failed")}
    title = f"{folder}: " + ", ".join(f"{n} {status}" for status, n in counts.items())
    table = Table(title=title)
    for column in ("video", "status", "utterances", "seconds", "error"):
        table.add_column(column, justify="right" if column in ("utterances", "seconds") else "left", overflow="fold")
    for o in outcomes:
        seconds = f"{o.seconds:.1f}" if o.seconds is not None else ""
        table.add_row(escape(o.video), o.status, str(o.utterances or ""), seconds, escape(o.error or ""))
    return table
