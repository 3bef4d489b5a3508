"""`meldctl serve`: the predict path behind HTTP, locally and as the SageMaker inference container."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from meldctl.cli.common import console, resolve_checkpoint, resolve_settings
from meldctl.settings import ServeSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _setting(key: str, *names: str, repeatable: bool = False) -> Any:
    """An option for the `[serve]` setting `key`, its help that setting's description."""
    help_text = ServeSettings.model_fields[key].description or ""
    if repeatable:
        help_text += " Repeatable; also MELDCTL_SERVE__" + key.upper() + ", comma-separated."
    default = ServeSettings.model_fields[key].default
    shown = "" if default in (None, []) else f"default {default}, "
    return typer.Option(*names, help=f"{help_text} ({shown}setting serve.{key})")


def serve(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="Checkpoint (default: best.pt of SageMaker's model folder inside an endpoint container, "
            "else setting model.checkpoint, else the newest runs/*/best.pt)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: 127.0.0.1; 0.0.0.0 in a SageMaker container).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: 8080, or SAGEMAKER_BIND_TO_PORT).")
    ] = None,
    device: Annotated[str | None, _setting("device")] = None,
    max_upload_mb: Annotated[float | None, _setting("max_upload_mb")] = None,
    max_batch: Annotated[int | None, _setting("max_batch")] = None,
    workers: Annotated[int | None, _setting("workers")] = None,
    batch_wait_ms: Annotated[float | None, _setting("batch_wait_ms")] = None,
    timeout_s: Annotated[float | None, _setting("timeout_s", "--timeout")] = None,
    header_timeout_s: Annotated[float | None, _setting("header_timeout_s", "--header-timeout")] = None,
    max_pending: Annotated[int | None, _setting("max_pending")] = None,
    allow_s3: Annotated[list[str] | None, _setting("allow_s3", "--allow-s3", repeatable=True)] = None,
    max_video_mb: Annotated[float | None, _setting("max_video_mb")] = None,
    max_video_minutes: Annotated[float | None, _setting("max_video_minutes")] = None,
) -> None:
    """Serve a checkpoint over HTTP: /predict, /analyze, /invocations (SageMaker), /ping, /health, / and /docs.

    The model loads once and runs one batch at a time; requests that arrive together share a forward. Each
    option's default is its setting in the serve section (`meldctl config show`), declared once there.
    """
    # The options are named as their settings: what was given is an override of the [serve] section.
    flags = {key: value for key, value in locals().items() if key in ServeSettings.model_fields and value != []}
    from meldctl.remote.objects import fetch_limited
    from meldctl.serving.container_env import detect_container
    from meldctl.serving.server import serve as run_server

    settings = resolve_settings(serve=flags).serve
    container = detect_container() if checkpoint is None else None
    if container is not None:
        path, origin = container.checkpoint(), f"SageMaker model folder {container.model_dir}"
    else:
        path, origin = resolve_checkpoint(checkpoint, given_as="CHECKPOINT")
    console.print(f"[dim]checkpoint: {escape(str(path))} ({escape(origin)})[/]", soft_wrap=True)
    run_server(
        checkpoint=path,
        host=host or (container.host if container else DEFAULT_HOST),
        port=port if port is not None else (container.port if container else DEFAULT_PORT),
        settings=settings,
        fetch_s3=fetch_limited,
        on_ready=_ready,
    )


def _ready(listening) -> None:  # noqa: ANN001 - meldctl.serving.server.Listening, imported lazily
    modalities = "+".join(listening.description["modalities"])
    console.print(
        f"Serving [bold]{modalities}[/] on {escape(listening.description['device'])} at "
        f"[bold]{escape(listening.url)}[/] (listening on {escape(listening.host)}:{listening.port}); "
        f"page {escape(listening.url)}/ , API docs {escape(listening.url)}/docs . Ctrl-C stops.",
        soft_wrap=True,
    )
