"""`meldctl train`: train locally (CPU, GPU, torchrun) or submit a SageMaker job with --remote."""

from __future__ import annotations

from pathlib import Path

from meldctl.cli.common import resolve_settings
from meldctl.cli.flags import Flag, Overrides, command

_LOCAL = "Local training"
_REMOTE = "Remote training (SageMaker)"

# Every option once, in the order --help lists them; a row with a section overrides that setting.
FLAGS = (
    Flag("data_dir", Path | None, "Prepared data folder.", "data", panel=_LOCAL),
    Flag("run_dir", Path | None, "Run folder (default runs/<timestamp>).", "train", panel=_LOCAL),
    Flag("epochs", int | None, "Maximum epochs.", "train", panel=_LOCAL),
    Flag("batch_size", int | None, "Utterances per batch.", "train", panel=_LOCAL),
    Flag("lr", float | None, "AdamW learning rate.", "train", panel=_LOCAL),
    Flag("modalities", str | None, "Comma-separated subset of text,audio,video.", "model", panel=_LOCAL),
    Flag("text_model", str | None, "Hugging Face name, local folder, or 'minilm' (bundled, offline).", "model",
         panel=_LOCAL),
    Flag("video_weights", str | None, "kinetics400, none, or a local R3D-18 .pth file.", "model", panel=_LOCAL),
    Flag("freeze_text", bool | None, "Freeze or fine-tune the text encoder.", "model",
         decls=("--freeze-text/--finetune-text",), panel=_LOCAL),
    Flag("context_past", int | None, "Dialogue context: earlier utterances of the same dialogue each one sees.",
         "model", panel=_LOCAL),
    Flag("context_future", int | None, "Dialogue context: later utterances each one sees (offline analysis).",
         "model", panel=_LOCAL),
    Flag("device", str | None, "auto, cpu or cuda.", "train", panel=_LOCAL),
    Flag("cache", bool | None, "Use the frozen-encoder feature cache.", "data", decls=("--cache/--no-cache",),
         panel=_LOCAL),
    Flag("resume", Path | None, "Continue a run (its folder or last.pt) with the settings it was started with; "
         "flags given here override them.", panel=_LOCAL),
    Flag("seed", int | None, "Random seed.", "train", panel=_LOCAL),
    Flag("workers", int | None, "DataLoader worker processes.", "train", panel=_LOCAL),
    Flag("remote", bool, "Run as an AWS SageMaker training job.", decls=("--remote",), default=False, panel=_REMOTE),
    Flag("instance_type", str | None, "SageMaker instance type.", "remote", panel=_REMOTE),
    Flag("instance_count", int | None, "Number of instances.", "remote", panel=_REMOTE),
    Flag("max_run", int | None, "Maximum run time (seconds).", "remote", panel=_REMOTE),
    Flag("spot", bool | None, "Managed spot training.", "remote", decls=("--spot/--on-demand",), panel=_REMOTE),
    Flag("max_wait", int | None, "Spot: maximum wait (seconds).", "remote", panel=_REMOTE),
    Flag("role", str | None, "IAM role ARN for the job.", "remote", panel=_REMOTE),
    Flag("bucket", str | None, "S3 bucket.", "remote", panel=_REMOTE),
    Flag("prefix", str | None, "S3 key prefix.", "remote", panel=_REMOTE),
    Flag("region", str | None, "AWS region.", "remote", panel=_REMOTE),
    Flag("image", str | None, "Training image URI.", "remote", panel=_REMOTE),
    Flag("data", str | None, "s3:// prefix or local prepared folder to upload.", "remote", panel=_REMOTE),
    Flag("wait", bool | None, "Follow the job to its end.", "remote", decls=("--wait/--no-wait",), panel=_REMOTE),
    Flag("network_isolation", bool | None, "Run the job without network access (needs --image with meldctl and its "
         "weights).", "remote", decls=("--network-isolation/--network",), panel=_REMOTE),
    Flag("dry_run", bool, "Print the request the SageMaker SDK would send and exit.", decls=("--dry-run",),
         default=False, panel=_REMOTE),
    Flag("as_json", bool, "Print the summary as JSON on stdout.", decls=("--json",), default=False),
)  # fmt: skip


def _train(flags: Overrides, *, resume: Path | None, remote: bool, dry_run: bool, as_json: bool) -> None:
    """Train the emotion and sentiment classifier on a prepared MELD folder.

    Frozen encoders' features are cached under the data folder, so every epoch after the first (and every
    later run with the same encoders) costs only the small trainable part. Ctrl-C saves last.pt; --resume
    continues. For several processes: torchrun --nproc_per_node N -m meldctl train ...
    Inside a SageMaker training job it follows the job's contract (docs/remote.md).
    """
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
    from meldctl.cli.train_local import resume_checkpoint, run_local, run_settings_file

    run_config: Path | None = None
    if resume is not None:
        resume_checkpoint(resume)
        run_config = run_settings_file(resume)  # the run's own settings, under the flags given now
    run_local(resolve_settings(run_config, **flags), resume=resume, as_json=as_json)


train = command(_train, FLAGS)
