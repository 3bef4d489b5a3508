"""`meldctl eval`: MELD's metrics for a checkpoint on a split, with confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_settings


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A meldctl checkpoint, e.g. runs/<run>/best.pt.")],
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data folder (manifests).")] = None,
    split: Annotated[str, typer.Option(help="Split to score: test, dev or train.")] = "test",
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: eval/<split>/ beside the checkpoint).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers for decoding clips.")] = None,
    cache: Annotated[bool | None, typer.Option("--cache/--no-cache", help="Use the feature cache.")] = None,
    modalities: Annotated[
        str | None,
        typer.Option(
            help="Score with only these of the checkpoint's modalities (e.g. text or text,audio): an ablation "
            "from one checkpoint; the others count as missing in every row."
        ),
    ] = None,
    context: Annotated[
        bool,
        typer.Option(
            "--context/--no-context",
            help="Score each utterance in its dialogue (a checkpoint trained with context); --no-context scores "
            "every utterance alone: the context ablation from one checkpoint.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Score a checkpoint on every utterance of a split with the preprocessing it was trained with: accuracy,
    weighted F1 (MELD's headline metric), macro F1 and per-class scores for both heads, beside the majority-class
    baseline. Rows whose clip is missing or broken are scored from what they have (and counted)."""
    if split not in ("train", "dev", "test"):
        raise typer.BadParameter("choose train, dev or test", param_hint="--split")
    settings = resolve_settings(
        data={"data_dir": data_dir, "cache": cache}, train={"device": device, "workers": workers}
    )
    chosen = _modalities(modalities)
    from meldctl.cli.progress import RichReporter
    from meldctl.cli.signals import stopping_on_signals
    from meldctl.evaluation import evaluate_checkpoint

    with stopping_on_signals() as stop, RichReporter() as reporter:
        result = evaluate_checkpoint(
            checkpoint,
            settings.data.data_dir,
            split,
            out_dir=out,
            device=settings.train.device,
            workers=settings.train.workers,
            use_cache=settings.data.cache,
            modalities=chosen,
            context=context,
            reporter=reporter,
            should_stop=stop,
            stop_signal=lambda: stop.requested,
        )
    if as_json:
        print_json(result.report)
        return
    console.print(_table(result.report))
    console.print(f"Wrote {', '.join(str(p) for p in result.files)}", soft_wrap=True)


def _modalities(value: str | None) -> list[str] | None:
    if value is None:
        return None
    from meldctl.labels import parse_modalities

    try:
        return list(parse_modalities(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--modalities") from None


def _context_words(context: dict | None) -> str:
    if not context or not (context["past"] or context["future"]):
        return ""
    if not context["used"]:
        return ", without context (--no-context)"
    return f", context {context['past']} past / {context['future']} future"


def _table(report: dict) -> Table:
    missing = ", ".join(f"{m} {n}" for m, n in report["missing"].items() if n) or "none"
    used = "+".join(report["modalities"]) + (f", ablated {'+'.join(report['ablated'])}" if report["ablated"] else "")
    used += _context_words(report.get("context"))
    table = Table(
        title=f"{report['checkpoint']} on {report['split']} ({used}): {report['n']} utterances "
        f"(rows without a modality: {missing})"
    )
    for column in ("head", "weighted F1", "accuracy", "macro F1", "majority weighted F1", "majority accuracy"):
        table.add_column(column, justify="right" if column != "head" else "left")
    for head in ("emotion", "sentiment"):
        scores, base = report[head], report["baseline"][head]
        table.add_row(
            head,
            *(
                f"{100 * v:.1f}"
                for v in (
                    scores["weighted_f1"],
                    scores["accuracy"],
                    scores["macro_f1"],
                    base["weighted_f1"],
                    base["accuracy"],
                )
            ),
        )
    per_class = Table(title="per class (F1 / support)", show_header=False)
    for head in ("emotion", "sentiment"):
        per_class.add_row(
            head,
            "  ".join(f"{label} {100 * s['f1']:.1f}/{s['support']}" for label, s in report[head]["per_class"].items()),
        )
    grid = Table.grid()
    grid.add_row(table)
    grid.add_row(per_class)
    return grid
