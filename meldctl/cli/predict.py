"""`meldctl predict`: emotion and sentiment probabilities for one clip or many."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_checkpoint, resolve_settings
from meldctl.errors import MeldError


def _read_pairs(path: Path) -> list[tuple[Path | None, str]]:
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist", param_hint="--texts")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["clip", "text"]:
        rows = rows[1:]
    pairs = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise typer.BadParameter(f"{path} row {number}: expected clip,text", param_hint="--texts")
        clip = Path(row[0]) if row[0].strip() else None
        if clip is not None and not clip.is_absolute() and not clip.exists():
            clip = path.parent / clip  # relative to the CSV, when not relative to the working folder
        pairs.append((clip, row[1]))
    return pairs


def predict(
    clips: Annotated[list[Path] | None, typer.Argument(help="Clips (any container FFmpeg reads).")] = None,
    text: Annotated[str | None, typer.Option(help="The utterance's text (used for every clip given).")] = None,
    texts: Annotated[Path | None, typer.Option(help="CSV of clip,text rows, for many clips.")] = None,
    ckpt: Annotated[
        Path | None, typer.Option(help="Checkpoint (default: setting, else newest runs/*/best.pt).")
    ] = None,
    top_k: Annotated[int, typer.Option(min=1, max=7, help="Emotions shown per clip.")] = 3,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print predictions as JSON on stdout.")] = False,
) -> None:
    """Predict emotion and sentiment for clips and their utterance text; the model loads once.

    A text-only checkpoint needs no clip: meldctl predict --text "Oh my God!" --ckpt text.pt
    """
    if texts is not None and (clips or text):
        raise typer.BadParameter("give --texts alone, or clips with --text", param_hint="--texts")
    pairs = _read_pairs(texts) if texts is not None else [(c, text) for c in clips] if clips else [(None, text)]
    if pairs == [(None, None)]:
        raise typer.BadParameter("give a clip, --text, or --texts FILE.csv")
    path, origin = resolve_checkpoint(ckpt)
    from meldctl.inference import Predictor

    predictor = Predictor.from_path(path, resolve_settings(train={"device": device}).train.device)
    console.print(f"[dim]checkpoint: {escape(str(path))} ({origin})[/]", soft_wrap=True)
    results, failures = [], 0
    for clip, utterance in pairs:
        try:
            results.append(predictor.predict(clip, utterance))
        except MeldError as exc:  # one bad clip must not cost the others their predictions
            failures += 1
            console.print(f"[bold red]Error:[/] {escape(str(clip or 'text'))}: {escape(exc.message)}", soft_wrap=True)
    for result in results:
        for warning in result.warnings:
            console.print(f"[yellow]Warning:[/] {escape(result.clip or 'text')}: {escape(warning)}", soft_wrap=True)
    if as_json:
        payload = [r.to_json(top_k) for r in results]
        print_json(payload[0] if len(pairs) == 1 and payload else payload)
    elif results:
        console.print(_table(results, top_k))
    if failures:
        raise typer.Exit(1)


def _table(results: list, top_k: int) -> Table:
    table = Table(title="meldctl predict")
    for column in ("clip", "text", f"top {top_k} emotions", "sentiment"):
        table.add_column(column, overflow="fold")
    for r in results:
        emotions = sorted(r.emotion.items(), key=lambda kv: -kv[1])[:top_k]
        sentiments = sorted(r.sentiment.items(), key=lambda kv: -kv[1])
        table.add_row(
            r.clip or "-",
            (r.text or "")[:60],
            "\n".join(f"{label} {p:.2f}" for label, p in emotions),
            "\n".join(f"{label} {p:.2f}" for label, p in sentiments),
        )
    return table
