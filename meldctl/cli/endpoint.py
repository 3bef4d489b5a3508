"""`meldctl endpoint`: deploy a checkpoint or a training job's model as a SageMaker endpoint; invoke; list; delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.analyze import Segment
from meldctl.cli.common import console, print_json, resolve_settings
from meldctl.errors import Interrupted
from meldctl.remote.endpoint_spec import INSTANCE_TYPE, SERVERLESS_MEMORY

app = typer.Typer(help="SageMaker endpoints serving a checkpoint with `meldctl serve` in meldctl's image.")

Region = Annotated[str | None, typer.Option(help="AWS region (default: remote.region, else the AWS configuration).")]
Bucket = Annotated[str | None, typer.Option(help="S3 bucket for the model and large or async requests.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


@app.command("deploy")
def deploy(
    source: Annotated[
        str, typer.Argument(metavar="CKPT|TRAINING_JOB", help="A checkpoint file, or a completed training job.")
    ],
    endpoint: Annotated[str, typer.Option(help="Endpoint name: created, or updated in place when it exists.")],
    instance_type: Annotated[str, typer.Option(help="Instance type of a real-time or async endpoint.")] = INSTANCE_TYPE,
    instance_count: Annotated[int, typer.Option(min=1, help="Instances.")] = 1,
    use_async: Annotated[bool, typer.Option("--async", help="Asynchronous: requests and answers go via S3.")] = False,
    output: Annotated[
        str | None, typer.Option(help="Async answers: s3:// prefix (default: s3://BUCKET/PREFIX/endpoints/NAME/async).")
    ] = None,
    serverless: Annotated[bool, typer.Option("--serverless", help="Serverless (CPU, paid per request).")] = False,
    memory_mb: Annotated[
        int | None, typer.Option(help="Serverless memory, 1024 to 6144 by 1024 (default: 6144).")
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Image built from meldctl's Dockerfile (default: remote.image, or the job's).")
    ] = None,
    role: Annotated[str | None, typer.Option(help="IAM role ARN the endpoint runs as (default: remote.role).")] = None,
    bucket: Bucket = None,
    region: Region = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the endpoint is InService.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be created; needs no credentials.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Package and upload the model, create model, endpoint config and endpoint, and wait until InService."""
    from meldctl.remote import aws
    from meldctl.remote.endpoint_spec import build_spec

    if output and not use_async:
        raise typer.BadParameter("--output is where an --async endpoint writes its answers", param_hint="--output")
    if memory_mb is not None and not serverless:
        raise typer.BadParameter("--memory-mb sizes a --serverless endpoint", param_hint="--memory-mb")
    remote = resolve_settings(remote={"role": role, "bucket": bucket, "region": region, "image": image}).remote
    spec = build_spec(
        source,
        endpoint=endpoint,
        region=aws.session(remote.region, need_credentials=False).region_name,
        role=remote.role,
        image=remote.image,
        bucket=remote.bucket,
        prefix=remote.prefix,
        instance_type=instance_type,
        instance_count=instance_count,
        serverless_memory_mb=(memory_mb or SERVERLESS_MEMORY[-1]) if serverless else None,
        async_output=output,
        use_async=use_async,
    )
    if dry_run:
        print_json(spec.describe()) if as_json else _render_plan(spec)
        return
    _deploy(spec, wait=wait, as_json=as_json)


@app.command("invoke")
def invoke(
    name: Annotated[str, typer.Argument(help="The endpoint.")],
    clip: Annotated[
        Path | None,
        typer.Argument(
            metavar="[CLIP|VIDEO]", help="The clip (none for a text-only checkpoint); with --analyze, a whole video."
        ),
    ] = None,  # fmt: skip
    text: Annotated[str | None, typer.Option(help="The utterance's text.")] = None,
    context: Annotated[
        list[str] | None,
        typer.Option(help='What was said before, oldest first, as "Speaker: line" (repeatable), as predict takes it.'),
    ] = None,
    no_context: Annotated[
        bool, typer.Option("--no-context", help="Classify the utterance alone, even with a context checkpoint.")
    ] = False,
    analyze: Annotated[
        bool, typer.Option("--analyze", help="A whole video: its emotion timeline, written as meldctl analyze does.")
    ] = False,
    subtitles: Annotated[
        Path | None, typer.Option(help="With --analyze: SRT, WebVTT or ASS file (default: one beside VIDEO).")
    ] = None,
    segment: Annotated[Segment, typer.Option(help="With --analyze: how the endpoint cuts utterances.")] = Segment.auto,
    out: Annotated[
        Path | None, typer.Option(help="With --analyze: output folder (default: VIDEO_STEM.meldctl/ beside VIDEO).")
    ] = None,
    bucket: Bucket = None,
    region: Region = None,
    as_json: Json = False,
) -> None:
    """One prediction from an endpoint (real-time, or async through S3), shown as `meldctl predict` shows it;
    with --analyze, a whole video's timeline (timeline.json, .csv, .srt, .png) as `meldctl analyze` writes it."""
    from meldctl.remote import aws
    from meldctl.remote.endpoint_invoke import invoke as invoke_endpoint

    if clip is not None and not clip.is_file():
        raise typer.BadParameter(f"{clip} is not a file", param_hint="VIDEO" if analyze else "CLIP")
    if analyze:
        if clip is None or text is not None or context or no_context:
            raise typer.BadParameter("--analyze takes a VIDEO and no --text or --context", param_hint="--analyze")
        if subtitles is not None and segment in (Segment.asr, Segment.vad):
            raise typer.BadParameter(f"--subtitles cannot be used with --segment {segment.value}")
        from meldctl.cli.endpoint_analyze import invoke_analyze

        invoke_analyze(name, clip, subtitles=subtitles, segment=segment.value, out=out, bucket=bucket, region=region,
                       as_json=as_json)  # fmt: skip
        return
    if subtitles is not None or out is not None or segment != Segment.auto:
        raise typer.BadParameter("--subtitles, --segment and --out go with --analyze", param_hint="--analyze")
    if clip is None and text is None:
        raise typer.BadParameter("give a clip, --text, or both")
    remote = resolve_settings(remote={"bucket": bucket, "region": region}).remote
    boto = aws.session(remote.region)
    turns = _turns(context or [])
    answer = invoke_endpoint(
        boto, name, clip, text, bucket=remote.bucket, prefix=remote.prefix, context=turns, no_context=no_context
    )
    if as_json:
        print_json(answer)
        return
    console.print(_prediction_table(name, answer))
    for warning in answer.get("warnings", []):
        console.print(f"[yellow]Warning:[/] {escape(str(warning))}", soft_wrap=True)


def _turns(lines: list[str]) -> list[tuple[str | None, str]]:
    """`--context` lines as (speaker, text), read as `meldctl predict --context` reads them."""
    if not lines:
        return []
    from meldctl.inference import Turn

    return [(turn.speaker, turn.text) for turn in map(Turn.parse, lines)]


@app.command("list")
def list_(region: Region = None, as_json: Json = False) -> None:
    """Every endpoint of the region with its status and size (each one costs money while it exists)."""
    from meldctl.remote import aws
    from meldctl.remote.endpoint_lifecycle import list_endpoints

    found = list_endpoints(aws.session(resolve_settings(remote={"region": region}).remote.region).client("sagemaker"))
    if as_json:
        print_json([info.__dict__ for info in found])
        return
    table = Table(title="SageMaker endpoints")
    for column in ("endpoint", "status", "size", "created", "reason"):
        table.add_column(column, overflow="fold")
    for info in found:
        table.add_row(info.name, info.status, info.kind, info.created or "-", escape(info.failure_reason or ""))
    console.print(table if found else "No endpoints in this region.")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The endpoint.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    region: Region = None,
    as_json: Json = False,
) -> None:
    """Delete an endpoint with its endpoint config and model (the model.tar.gz in S3 stays)."""
    from meldctl.remote import aws
    from meldctl.remote.endpoint_lifecycle import delete_endpoint

    client = aws.session(resolve_settings(remote={"region": region}).remote.region).client("sagemaker")
    if not yes and not typer.confirm(f"Delete endpoint {name}, its endpoint config and model?"):
        raise typer.Exit(1)
    removed = delete_endpoint(client, name)
    if as_json:
        print_json({"endpoint": name, "deleted": removed})
        return
    for item in removed:
        console.print(f"deleted {escape(item)}")


def _deploy(spec: Any, *, wait: bool, as_json: bool) -> None:
    """Credentials, the AWS-side checks, then the local checkpoint; deploy with a progress line, and report
    (Ctrl-C detaches)."""
    from meldctl.remote import aws
    from meldctl.remote import endpoint_lifecycle as lifecycle

    boto = aws.session(spec.region)
    spec = lifecycle.check_deploy(boto, spec)
    if spec.upload is not None:
        _check_checkpoint(spec.upload.checkpoint)
    try:
        with _Progress(spec.endpoint) as progress:
            done = lifecycle.deploy(boto, spec, on_upload=_uploading, on_status=progress, wait=wait)
    except KeyboardInterrupt:
        raise Interrupted(
            f"detached from endpoint {spec.endpoint}: what was already created keeps going (an endpoint costs money "
            "while it exists)",
            "SIGINT",
            hint=f"see it with meldctl endpoint list, remove it with meldctl endpoint delete {spec.endpoint}",
        ) from None
    if as_json:
        print_json(done.__dict__ | {"region": spec.region, "kind": spec.kind})
        return
    for item in done.removed:
        console.print(f"  removed the previous {escape(item)}", style="dim")
    verb = "updated" if done.updated else "created"
    name = escape(spec.endpoint)
    console.print(f"Endpoint [bold]{name}[/] {verb} ({escape(spec.kind)}): {done.status}.", soft_wrap=True)
    console.print(f"Try it: meldctl endpoint invoke {spec.endpoint} CLIP --text '...' (or VIDEO --analyze)",
                  markup=False, soft_wrap=True)  # fmt: skip
    console.print(
        f"It costs money while it exists; remove it with: meldctl endpoint delete {spec.endpoint}", markup=False
    )


class _Progress:
    """A status line while the endpoint starts, and one printed line per status change."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint, self.last = endpoint, None
        self.status = console.status(f"endpoint {endpoint}: starting")

    def __enter__(self) -> _Progress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def __call__(self, status: str, elapsed: float) -> None:
        minutes, seconds = divmod(int(elapsed), 60)
        line = f"endpoint {self.endpoint}: {status} ({minutes}:{seconds:02d})"
        self.status.update(escape(line))
        if status != self.last:
            self.last = status
            console.print(escape(line), soft_wrap=True)


def _check_checkpoint(path: Path) -> None:
    """Load the checkpoint here first: a broken one must not cost ten minutes of endpoint start-up to find."""
    from meldctl.inference import Predictor

    modalities = "+".join(Predictor.from_path(path, "cpu").modalities)
    console.print(f"[dim]checkpoint {escape(str(path))} loads ({modalities})[/]", soft_wrap=True)


def _uploading(upload: Any) -> None:
    console.print(f"uploading {escape(str(upload.checkpoint))} as {escape(upload.uri)}", soft_wrap=True)


def _render_plan(spec: Any) -> None:
    model, config = spec.model_request(), spec.config_request()
    table = Table(title=f"SageMaker endpoint {spec.endpoint} (dry run, nothing created)")
    table.add_column("")
    table.add_column("value", overflow="fold")
    rows = [
        ("region", spec.region),
        ("model data", spec.model_data or f"model.tar.gz of training job {spec.training_job} (looked up on deploy)"),
        ("upload", f"{spec.upload.checkpoint} -> {spec.upload.uri}" if spec.upload else "none"),
        ("image", spec.image or "-"),
        ("role", spec.role or "-"),
        ("size", spec.kind),
        ("model", model["ModelName"]),
        ("endpoint config", config["EndpointConfigName"]),
        ("async answers", spec.async_output or "-"),
        ("endpoint", f"{spec.endpoint} (created, or updated in place if it exists)"),
    ]
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    console.print(table)
    for problem in spec.problems():
        console.print(f"[yellow]Before deploying:[/] {escape(problem)}", soft_wrap=True)


def _prediction_table(name: str, answer: dict[str, Any]) -> Table:
    table = Table(title=f"endpoint {name}")
    for column in ("clip", "text", "top 3 emotions", "sentiment"):
        table.add_column(column, overflow="fold")
    emotions = sorted((answer.get("emotion") or {}).items(), key=lambda kv: -kv[1])[:3]
    sentiments = sorted((answer.get("sentiment") or {}).items(), key=lambda kv: -kv[1])
    table.add_row(
        escape(str(answer.get("clip") or "-")),
        escape(str(answer.get("text") or "")[:60]),
        "\n".join(f"{label} {p:.2f}" for label, p in emotions),
        "\n".join(f"{label} {p:.2f}" for label, p in sentiments),
    )
    return table
