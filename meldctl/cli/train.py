"""`meldctl train`: train locally (CPU, GPU, torchrun) or submit a SageMaker job with --remote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meldctl.cli.common import resolve_settings

_LOCAL = "Local training"
_REMOTE = "Remote training (SageMaker)"


def train(
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data folder.", rich_help_panel=_LOCAL)] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/<timestamp>).", rich_help_panel=_LOCAL)
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.", rich_help_panel=_LOCAL)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Utterances per batch.", rich_help_panel=_LOCAL)] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate.", rich_help_panel=_LOCAL)] = None,
    modalities: Annotated[
        str | None, typer.Option(help="Comma-separated subset of text,audio,video.", rich_help_panel=_LOCAL)
    ] = None,
    text_model: Annotated[
        str | None,
        typer.Option(help="Hugging Face name, local folder, or 'minilm' (bundled, offline).", rich_help_panel=_LOCAL),
    ] = None,
    video_weights: Annotated[
        str | None, typer.Option(help="kinetics400, none, or a local R3D-18 .pth file.", rich_help_panel=_LOCAL)
    ] = None,
    freeze_text: Annotated[
        bool | None,
        typer.Option(
            "--freeze-text/--finetune-text", help="Freeze or fine-tune the text encoder.", rich_help_panel=_LOCAL
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.", rich_help_panel=_LOCAL)] = None,
    cache: Annotated[
        bool | None,
        typer.Option("--cache/--no-cache", help="Use the frozen-encoder feature cache.", rich_help_panel=_LOCAL),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue a run (its folder or last.pt) with the settings it was started with; flags given here "
            "override them.",
            rich_help_panel=_LOCAL,
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.", rich_help_panel=_LOCAL)] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.", rich_help_panel=_LOCAL)] = None,
    remote: Annotated[
        bool, typer.Option("--remote", help="Run as an AWS SageMaker training job.", rich_help_panel=_REMOTE)
    ] = False,
    instance_type: Annotated[str | None, typer.Option(help="SageMaker instance type.", rich_help_panel=_REMOTE)] = None,
    instance_count: Annotated[int | None, typer.Option(help="Number of instances.", rich_help_panel=_REMOTE)] = None,
    max_run: Annotated[int | None, typer.Option(help="Maximum run time (seconds).", rich_help_panel=_REMOTE)] = None,
    spot: Annotated[
        bool | None, typer.Option("--spot/--on-demand", help="Managed spot training.", rich_help_panel=_REMOTE)
    ] = None,
    max_wait: Annotated[int | None, typer.Option(help="Spot: maximum wait (seconds).", rich_help_panel=_REMOTE)] = None,
    role: Annotated[str | None, typer.Option(help="IAM role ARN for the job.", rich_help_panel=_REMOTE)] = None,
    bucket: Annotated[str | None, typer.Option(help="S3 bucket.", rich_help_panel=_REMOTE)] = None,
    prefix: Annotated[str | None, typer.Option(help="S3 key prefix.", rich_help_panel=_REMOTE)] = None,
    region: Annotated[str | None, typer.Option(help="AWS region.", rich_help_panel=_REMOTE)] = None,
    image: Annotated[str | None, typer.Option(help="Training image URI.", rich_help_panel=_REMOTE)] = None,
    data: Annotated[
        str | None, typer.Option(help="s3:// prefix or local prepared folder to upload.", rich_help_panel=_REMOTE)
    ] = None,
    wait: Annotated[
        bool | None, typer.Option("--wait/--no-wait", help="Follow the job to its end.", rich_help_panel=_REMOTE)
    ] = None,
    network_isolation: Annotated[
        bool | None,
        typer.Option(
            "--network-isolation/--network",
            help="Run the job without network access (needs --image with meldctl and its weights).",
            rich_help_panel=_REMOTE,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the request the SageMaker SDK would send and exit.", rich_help_panel=_REMOTE
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Train the emotion and sentiment classifier on a prepared MELD folder.

    Frozen encoders' features are cached under the data folder, so every epoch after the first (and every
    later run with the same encoders) costs only the small trainable part. Ctrl-C saves last.pt; --resume
    continues. For several processes: torchrun --nproc_per_node N -m meldctl train ...
    Inside a SageMaker training job it follows the job's contract (docs/remote.md).
    """
    flags = {
        "data": {"data_dir": data_dir, "cache": cache},
        "model": {
            "modalities": modalities,
            "text_model": text_model,
            "video_weights": video_weights,
            "freeze_text": freeze_text,
        },
        "train": {
            "run_dir": run_dir,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "device": device,
            "seed": seed,
            "workers": workers,
        },
        "remote": {
            "instance_type": instance_type,
            "instance_count": instance_count,
            "max_run": max_run,
            "spot": spot,
            "max_wait": max_wait,
            "role": role,
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "image": image,
            "data": data,
            "wait": wait,
            "network_isolation": network_isolation,
        },
    }
    if remote or dry_run:
        from meldctl.cli.train_remote import submit_remote

        submit_remote(resolve_settings(**flags), dry_run=dry_run, as_json=as_json)
        return
    from meldctl.training.sagemaker_env import detect

    job = detect()
    if job is not None:
        from meldctl.cli.train_job import run_in_job

        run_in_job(job, flags, as_json=as_json)
        return
    from meldctl.cli.train_local import resume_checkpoint, run_settings_file

    run_config = None
    if resume is not None:
        resume_checkpoint(resume)
        run_config = run_settings_file(resume)  # the run's own settings, under the flags given now
    settings = resolve_settings(run_config, **flags)
    from meldctl.cli.train_local import run_local

    run_local(settings, resume=resume, as_json=as_json)
