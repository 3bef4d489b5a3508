"""`meldctl analyze`: a whole video -> utterances -> an emotion timeline (JSON, CSV, SRT, PNG)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.analyze_folder import AnalyzeOptions, analyze_folder, context_warnings
from meldctl.cli.common import console, print_json, resolve_checkpoint, resolve_settings


class Segment(StrEnum):
    auto = "auto"
    subtitles = "subtitles"
    asr = "asr"
    vad = "vad"


def default_out_dir(video: Path) -> Path:
    """`VIDEO_STEM.meldctl/` beside the video."""
    return video.parent / f"{video.stem}.meldctl"


_REMOTE = "SageMaker Processing (--remote)"
_Remote = Annotated[bool, typer.Option("--remote", help="Analyse the s3:// folder as a Processing job.",
                                       rich_help_panel=_REMOTE)]  # fmt: skip
_Image = Annotated[str | None, typer.Option(help="A meldctl image (default: AWS PyTorch).", rich_help_panel=_REMOTE)]
_InstanceType = Annotated[str | None, typer.Option(help="Default ml.g5.xlarge.", rich_help_panel=_REMOTE)]
_InstanceCount = Annotated[
    int | None, typer.Option(min=1, help="Instances sharing the videos.", rich_help_panel=_REMOTE)
]
_Role = Annotated[str | None, typer.Option(help="IAM role ARN of the job.", rich_help_panel=_REMOTE)]
_Bucket = Annotated[str | None, typer.Option(help="For code, manifests, checkpoint.", rich_help_panel=_REMOTE)]
_Region = Annotated[str | None, typer.Option(help="AWS region.", rich_help_panel=_REMOTE)]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the request; send nothing.", rich_help_panel=_REMOTE)]
_Wait = Annotated[bool, typer.Option(help="Follow the job to its end.", rich_help_panel=_REMOTE)]
_Causal = Annotated[
    bool,
    typer.Option(
        "--causal",
        help="Dialogue context from earlier utterances only (as if live), even when the checkpoint was trained to "
        "read later ones too.",
    ),
]
_NoContext = Annotated[
    bool, typer.Option("--no-context", help="Classify every utterance alone, even with a context checkpoint.")
]


def analyze(
    video: Annotated[
        str,
        typer.Argument(
            help="The video (any container FFmpeg reads), a folder of videos, or with --remote an s3:// folder."
        ),
    ],
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
        str | None,
        typer.Option(
            help="Checkpoint (default: setting, else newest runs/*/best.pt); with --remote also a training job's name "
            "or an s3://.../model.tar.gz."
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(help="Output folder (default: VIDEO_STEM.meldctl/ beside VIDEO); with --remote s3://BUCKET/OUT/."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Utterances per forward pass.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print timeline.json on stdout.")] = False,
    by_speaker: Annotated[
        bool, typer.Option(help="One panel per speaker in timeline.png (speaker names from the subtitles).")
    ] = False,
    causal: _Causal = False,
    no_context: _NoContext = False,
    remote: _Remote = False,
    image: _Image = None,
    instance_type: _InstanceType = None,
    instance_count: _InstanceCount = None,
    role: _Role = None,
    bucket: _Bucket = None,
    region: _Region = None,
    dry_run: _DryRun = False,
    wait: _Wait = True,
) -> None:
    """Cut a whole video into utterances and classify each: an emotion timeline (timeline.json, .csv, .srt, .png).

    Example: meldctl analyze episode.mp4 --ckpt runs/best/best.pt (uses episode.srt when it is there).
    A checkpoint trained with dialogue context reads each utterance in the video's conversation, with the
    speakers the subtitles name (--causal: earlier utterances only; --no-context: none).
    A folder: every video in it, OUT/<video without extension>/timeline.*, skipping those done.
    Many videos on SageMaker: meldctl analyze s3://BUCKET/EPISODES/ --remote --out s3://BUCKET/TIMELINES/
    """
    context = _context(causal, no_context)
    if remote or dry_run:
        from meldctl.cli.analyze_remote import analyze_remote

        overrides = {"image": image, "instance_type": instance_type, "instance_count": instance_count, "role": role,
                     "bucket": bucket, "region": region, "wait": None if wait else False}  # fmt: skip
        analyze_remote(video, out, ckpt, resolve_settings(remote=overrides).remote, segment=segment.value,
                       dry_run=dry_run, as_json=as_json, context=context)  # fmt: skip
        return
    if subtitles is not None and segment in (Segment.asr, Segment.vad):
        raise typer.BadParameter(f"--subtitles cannot be used with --segment {segment.value}", param_hint="--subtitles")
    from meldctl.analysis.outputs import check_output_folder

    options = AnalyzeOptions(subtitles, segment.value, asr_model, device, batch_size, as_json, by_speaker, context)
    source = Path(video)
    out_dir = Path(out) if out else default_out_dir(source)
    check_output_folder(out_dir)  # before a model load and a whole analysis, not after
    if source.is_dir():
        analyze_folder(source, out_dir, Path(ckpt) if ckpt else None, options)
        return
    _analyze_file(source, out_dir, Path(ckpt) if ckpt else None, options)


def _context(causal: bool, no_context: bool) -> str:
    """The dialogue context the flags ask for (`meldctl.analysis.pipeline.CONTEXTS`)."""
    if causal and no_context:
        raise typer.BadParameter("--causal and --no-context exclude each other", param_hint="--causal")
    return "none" if no_context else "causal" if causal else "full"


def _analyze_file(video: Path, out_dir: Path, ckpt: Path | None, options: AnalyzeOptions) -> None:
    from meldctl.analysis.outputs import write_outputs

    path, origin = resolve_checkpoint(ckpt)
    settings = resolve_settings(train={"device": options.device})
    from meldctl.analysis.pipeline import analyze as analyze_video
    from meldctl.analysis.timeline import speakers, summary, to_json
    from meldctl.cli.analyze_progress import AnalyzeProgress
    from meldctl.inference import Predictor

    with AnalyzeProgress(console) as progress:
        timeline = analyze_video(
            video,
            lambda: Predictor.from_path(path, settings.train.device),
            segment=options.segment,
            subtitles=options.subtitles,
            asr_model=options.asr_model,
            batch_size=options.batch_size,
            context=options.context,
            progress=progress,
        )
    files = write_outputs(timeline, out_dir, by_speaker=options.by_speaker)
    console.print(f"[dim]checkpoint: {escape(str(path))} ({origin})[/]", soft_wrap=True)
    warnings = list(timeline.warnings) + context_warnings(options.context, timeline.context["used"])
    if options.by_speaker and not speakers(timeline):
        warnings.append("the subtitles name no speaker: timeline.png shows the whole video, not one panel each")
    for warning in warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    if options.as_json:
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
