"""`meldctl analyze s3://... --remote`: the Processing job's request (`--dry-run`), its submission, videos done /
total while it runs, and a summary table at the end."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_checkpoint
from meldctl.errors import Interrupted
from meldctl.settings import RemoteSettings


def analyze_remote(
    source: str, out: str | None, ckpt: str | None, remote: RemoteSettings, *, segment: str, dry_run: bool,
    as_json: bool, context: str = "full",
) -> None:  # fmt: skip
    """Plan the job (print it with `dry_run`), else submit it and, with `remote.wait`, follow it to the end.

    Args:
        source: `s3://BUCKET/PREFIX/`, the videos (and their subtitles beside them).
        out: `s3://BUCKET/OUT/`.
        ckpt: A local checkpoint, an `s3://.../model.tar.gz` or a training job's name (default: as `analyze`).
        remote: The remote settings with the flags on top.
        segment: auto, subtitles, asr or vad.
        context: Dialogue context: full, causal (--causal) or none (--no-context).
        dry_run: Print the CreateProcessingJob request; nothing is sent, no credentials needed.
        as_json: JSON on stdout.
    """
    from meldctl.remote import processing

    if not source.startswith("s3://"):
        raise typer.BadParameter(
            f"{source}: --remote analyses videos in S3; upload them first (aws s3 sync FOLDER s3://BUCKET/PREFIX/)",
            param_hint="VIDEO",
        )
    if not out:
        raise typer.BadParameter("--remote needs --out s3://BUCKET/PREFIX/ for the timelines", param_hint="--out")
    checkpoint = ckpt if ckpt is not None else str(resolve_checkpoint(None)[0])
    spec = processing.plan_spec(
        source, out, checkpoint, remote, segment=segment, context=context, need_credentials=not dry_run
    )
    if dry_run:
        plan = processing.plan_offline(spec)
        _render_plan(plan, dry_run=True)
        print_json(plan.describe() if as_json else plan.request)
        return
    plan = processing.submit(spec, on_upload=_uploaded)
    if not plan.videos:
        console.print(f"All {len(plan.done)} videos under {escape(spec.source.uri)} already have their timeline in "
                      f"{escape(spec.out)}: nothing to do.", soft_wrap=True)  # fmt: skip
        if as_json:
            print_json({"job_name": None, "already_done": plan.done})
        return
    _render_plan(plan, dry_run=False)
    if not remote.wait:
        console.print(f"Follow it with: aws sagemaker describe-processing-job --processing-job-name "
                      f"{spec.job_name}; timelines appear in {escape(spec.out)}", soft_wrap=True)  # fmt: skip
        if as_json:
            print_json(plan.describe())
        return
    status = _follow(spec, plan.videos)
    rows = processing.results(spec.region, spec.job_name, spec.out, plan.videos)
    if as_json:
        print_json({"job_name": spec.job_name, "status": status, "out": spec.out, "already_done": plan.done,
                    "videos": [vars(r) for r in rows]})  # fmt: skip
    else:
        console.print(_summary(spec.job_name, status, rows))
    if status != "Completed":
        raise typer.Exit(1)


def _follow(spec: Any, videos: list[str]) -> str:
    """Print the status and videos done / total as they change; the final status ("Detached" on Ctrl-C)."""
    from meldctl.remote import processing

    status = "Unknown"
    try:
        for progress in processing.follow(spec.region, spec.job_name, spec.out, videos):
            status = progress.status
            message = f": {escape(progress.message)}" if progress.message else ""
            console.print(f"[bold cyan]{progress.status}[/] {progress.done}/{progress.total} videos done{message}",
                          soft_wrap=True)  # fmt: skip
    except KeyboardInterrupt:
        raise Interrupted(
            f"detached from job {spec.job_name}, which keeps running", "SIGINT",
            hint=f"stop it with: aws sagemaker stop-processing-job --processing-job-name {spec.job_name}",
        ) from None  # fmt: skip
    return status


def _uploaded(what: str, where: str) -> None:
    console.print(f"{escape(what)} -> {escape(where)}", soft_wrap=True)


def _render_plan(plan: Any, *, dry_run: bool) -> None:
    spec, request = plan.spec, plan.request
    cluster = request["ProcessingResources"]["ClusterConfig"]
    title = "(dry run, nothing sent)" if dry_run else "created"
    table = Table(title=f"SageMaker processing job {spec.job_name} {title}")
    table.add_column("")
    table.add_column("value", overflow="fold")
    videos = f"{len(plan.videos)} to analyse, {len(plan.done)} already done" if not dry_run else "listed at submission"
    rows = [
        ("region", spec.region),
        ("instances", f"{cluster['InstanceCount']} x {cluster['InstanceType']} ({cluster['VolumeSizeInGB']} GB)"),
        ("image", request["AppSpecification"]["ImageUri"]),
        ("videos", f"{spec.source.uri}{spec.source.start} ({videos}), sharded by S3 key"),
        ("timelines", f"{spec.out}/<video without extension>/timeline.{{json,csv,srt,png}}"),
        ("role", request["RoleArn"]),
        *((f"upload {what}", where) for what, where in plan.uploads.items()),
    ]
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    console.print(table)


def _summary(job: str, status: str, rows: list) -> Table:
    counts = {s: sum(r.status == s for r in rows) for s in ("done", "skipped", "failed", "missing")}
    table = Table(title=f"{job}: {status}; " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for column in ("video", "status", "utterances", "seconds", "host", "error"):
        table.add_column(column, justify="right" if column in ("utterances", "seconds") else "left", overflow="fold")
    for r in rows:
        seconds = f"{r.seconds:.1f}" if r.seconds is not None else ""
        table.add_row(escape(r.video), r.status, str(r.utterances or ""), seconds, r.host or "", escape(r.error or ""))
    return table
