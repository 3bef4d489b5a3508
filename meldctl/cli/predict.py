"""`meldctl predict`: emotion and sentiment probabilities for one clip or many."""

from __future__ import annotations

import csv
import io
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
    from meldctl.data.meld import decode_csv

    rows = [row for row in csv.reader(io.StringIO(decode_csv(path.read_bytes()), newline="")) if row]
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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Refuse a clip that lacks a stream the checkpoint uses, instead of answering without it."
        ),
    ] = False,
    dialogue: Annotated[
        Path | None,
        typer.Option(
            help="A conversation to classify line by line: JSONL or CSV with text, optional speaker, clip (relative "
            "to the file; none = text only) and dialogue (groups rows). One prediction per row, in order."
        ),
    ] = None,
    context: Annotated[
        list[str] | None,
        typer.Option(
            help='What was said before this utterance, oldest first, as "Speaker: line" (repeatable); used by a '
            "checkpoint trained with dialogue context."
        ),
    ] = None,
    no_context: Annotated[
        bool, typer.Option("--no-context", help="Classify every utterance alone, even with a context checkpoint.")
    ] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print predictions as JSON on stdout.")] = False,
) -> None:
    """Predict emotion and sentiment for clips and their utterance text; the model loads once.

    A text-only checkpoint needs no clip: meldctl predict --text "Oh my God!" --ckpt text.pt. A clip without an
    audio or video stream is answered from what it has, with a warning (--strict refuses it). A checkpoint
    trained with dialogue context reads what was said around an utterance: --context "Rachel: I got the job!"
    for one utterance, or --dialogue FILE for a whole conversation.
    """
    if dialogue is not None and (clips or text or texts or context):
        raise typer.BadParameter("give --dialogue alone", param_hint="--dialogue")
    if texts is not None and (clips or text):
        raise typer.BadParameter("give --texts alone, or clips with --text", param_hint="--texts")
    if context and (texts is not None or (clips and len(clips) > 1)):
        raise typer.BadParameter("--context goes with one utterance (one clip, or --text)", param_hint="--context")
    if dialogue is None:
        pairs = _read_pairs(texts) if texts is not None else [(c, text) for c in clips] if clips else [(None, text)]
        if pairs == [(None, None)]:
            raise typer.BadParameter("give a clip, --text, --texts FILE.csv or --dialogue FILE")
    path, origin = resolve_checkpoint(ckpt)
    from meldctl.inference import Predictor

    predictor = Predictor.from_path(path, resolve_settings(train={"device": device}).train.device)
    console.print(f"[dim]checkpoint: {escape(str(path))} ({origin})[/]", soft_wrap=True)
    if dialogue is not None:
        _predict_dialogue(predictor, dialogue, top_k=top_k, strict=strict, context=not no_context, as_json=as_json)
        return
    if context and not predictor.uses_context:
        console.print("[yellow]Warning:[/] this checkpoint was trained without dialogue context: --context is not used")
    results, failures = [], 0
    for clip, utterance in pairs:
        try:
            results.append(_predict_one(predictor, clip, utterance, context or [], strict, not no_context))
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


def _predict_one(predictor, clip: Path | None, text: str | None, context: list[str], strict: bool, use: bool):
    """One utterance, after the `--context` lines when there are any (they are said before it)."""
    if not context:
        return predictor.predict(clip, text, strict=strict)
    from meldctl.inference import Turn

    turns = [Turn.parse(line) for line in context]
    inputs = [predictor.prepare_turn(t) for t in turns] + [predictor.prepare(clip, text, strict=strict)]
    return predictor.run_dialogue(inputs, [t.speaker for t in turns] + [None], context=use)[-1]


def _predict_dialogue(predictor, path: Path, *, top_k: int, strict: bool, context: bool, as_json: bool) -> None:
    from meldctl.data.dialogue import read_dialogue_file
    from meldctl.inference import predict_lines

    lines = read_dialogue_file(path)
    if context and not predictor.uses_context:
        console.print("[yellow]Warning:[/] this checkpoint was trained without dialogue context: rows are alone")
    answers = predict_lines(predictor, lines, context=context, strict=strict)
    rows, failures = [], 0
    for number, (line, answer) in enumerate(zip(lines, answers, strict=True), start=1):
        if isinstance(answer, MeldError):
            failures += 1
            console.print(f"[bold red]Error:[/] {escape(str(path))} row {number}: {escape(answer.message)}")
            continue
        for warning in answer.warnings:
            console.print(f"[yellow]Warning:[/] row {number}: {escape(warning)}", soft_wrap=True)
        rows.append((line, answer))
    if as_json:
        print_json(
            [{**a.to_json(top_k), "dialogue": line.dialogue or None, "speaker": line.speaker} for line, a in rows]
        )
    elif rows:
        console.print(_table([a for _, a in rows], top_k, speakers=[line.speaker for line, _ in rows]))
    if failures:
        raise typer.Exit(1)


def _table(results: list, top_k: int, speakers: list[str | None] | None = None) -> Table:
    table = Table(title="meldctl predict")
    columns = ("speaker",) if speakers is not None else ()
    for column in (*columns, "clip", "text", f"top {top_k} emotions", "sentiment"):
        table.add_column(column, overflow="fold")
    for i, r in enumerate(results):
        emotions = sorted(r.emotion.items(), key=lambda kv: -kv[1])[:top_k]
        sentiments = sorted(r.sentiment.items(), key=lambda kv: -kv[1])
        table.add_row(
            *((speakers[i] or "-",) if speakers is not None else ()),
            r.clip or "-",
            (r.text or "")[:60],
            "\n".join(f"{label} {p:.2f}" for label, p in emotions),
            "\n".join(f"{label} {p:.2f}" for label, p in sentiments),
        )
    return table
