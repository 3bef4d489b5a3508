"""`meldctl weights`: put the text encoder and video weights into the standard caches, for offline runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from meldctl.cli.common import console, print_json, resolve_settings

app = typer.Typer(help="Pretrained weights for offline training (Hugging Face and torch caches).", no_args_is_help=True)


@app.command("fetch")
def fetch(
    text_model: Annotated[str | None, typer.Option(help="Text encoder name (default: model.text_model).")] = None,
    video_weights: Annotated[
        str | None, typer.Option(help="Video weights: kinetics400 or none (default: model.video_weights).")
    ] = None,
    text_from: Annotated[
        Path | None, typer.Option(help="A local copy of the text encoder's folder, to cache under its name.")
    ] = None,
    video_from: Annotated[
        Path | None, typer.Option(help="A local copy of the R3D-18 Kinetics-400 file (r3d_18-b3b3357e.pth).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print where the weights are as JSON on stdout.")] = False,
) -> None:
    """Cache the configured text encoder (HF_HOME) and R3D-18 weights (TORCH_HOME), from the internet or from local
    copies. Afterwards, training with HF_HUB_OFFLINE=1 needs no network; the training image runs this at build time."""
    from meldctl.weights import fetch_text, fetch_video

    for path, option in ((text_from, "--text-from"), (video_from, "--video-from")):
        if path is not None and not path.exists():
            raise typer.BadParameter(f"{path} does not exist", param_hint=option)
    model = resolve_settings(model={"text_model": text_model, "video_weights": video_weights}).model
    found = [fetch_text(model.text_model, text_from), fetch_video(model.video_weights, video_from)]
    if as_json:
        print_json([{"kind": s.kind, "name": s.name, "state": s.state, "path": s.path} for s in found])
        return
    for status in found:
        where = f" at {status.path}" if status.path else ""
        console.print(f"{status.kind} {escape(status.name)}: {status.detail}{escape(where)}", soft_wrap=True)
