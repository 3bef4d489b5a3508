"""`meldctl serve`: the predict path behind HTTP, locally and as the SageMaker inference container."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from meldctl.cli.common import console, resolve_checkpoint, resolve_settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


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
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest clip accepted, in MB (413 above).")] = 100.0,
    max_batch: Annotated[
        int | None,
        typer.Option(min=1, max=512, help="Most requests in one forward (default: 8 on a GPU, 1 on the CPU)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Threads decoding clips (0: one per core, 2 to 8).")] = 0,
    batch_wait_ms: Annotated[
        float, typer.Option(min=0, help="How long a decoded request may wait for others still being decoded.")
    ] = 5.0,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Time limit of one request in seconds, upload included (504 after).")
    ] = 60.0,
    max_pending: Annotated[int, typer.Option(min=1, help="Requests in progress at once (503 above).")] = 64,
) -> None:
    """Serve a checkpoint over HTTP: /predict, /invocations (SageMaker), /ping, /health, a page at / and /docs.

    The model loads once and runs one batch at a time; requests that arrive together share a forward.
    """
    from meldctl.remote.objects import fetch_limited
    from meldctl.serving.app import ServeOptions
    from meldctl.serving.container_env import detect_container
    from meldctl.serving.server import serve as run_server

    container = detect_container() if checkpoint is None else None
    if container is not None:
        path, origin = container.checkpoint(), f"SageMaker model folder {container.model_dir}"
    else:
        path, origin = resolve_checkpoint(checkpoint, given_as="CHECKPOINT")
    console.print(f"[dim]checkpoint: {escape(str(path))} ({escape(origin)})[/]", soft_wrap=True)
    options = ServeOptions(
        max_upload_mb=max_upload_mb,
        max_batch=max_batch,
        max_wait_ms=batch_wait_ms,
        workers=workers or min(8, max(2, os.cpu_count() or 1)),
        timeout_s=timeout,
        max_pending=max_pending,
    )
    run_server(
        checkpoint=path,
        device=resolve_settings(train={"device": device}).train.device,
        host=host or (container.host if container else DEFAULT_HOST),
        port=port if port is not None else (container.port if container else DEFAULT_PORT),
        options=options,
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
