"""`meldctl cache`: build the frozen encoders' feature cache ahead of training, and list what is cached."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_settings

app = typer.Typer(help="The feature cache: build it ahead of training (also under torchrun), or list it.")


@app.command("build")
def build(
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data folder.")] = None,
    splits: Annotated[str, typer.Option(help="Comma-separated splits to cache.")] = "train,dev,test",
    modalities: Annotated[str | None, typer.Option(help="Comma-separated subset of text,audio,video.")] = None,
    text_model: Annotated[str | None, typer.Option(help="Hugging Face name, local folder, or 'minilm'.")] = None,
    video_weights: Annotated[str | None, typer.Option(help="kinetics400, none, or a local R3D-18 .pth.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes decoding clips.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Compute the features that training with the same settings would cache, for every split.

    A later `meldctl train` with the same encoders and preprocessing finds the cache and starts at once. With
    several processes (torchrun --nproc_per_node N -m meldctl cache build ...) each computes its share.
    """
    chosen = [s.strip() for s in splits.split(",") if s.strip()]
    if not chosen or set(chosen) - {"train", "dev", "test"}:
        raise typer.BadParameter("choose splits among train, dev, test", param_hint="--splits")
    settings = resolve_settings(
        data={"data_dir": data_dir},
        model={"modalities": modalities, "text_model": text_model, "video_weights": video_weights},
        train={"device": device, "workers": workers},
    )
    from meldctl.cli.progress import RichReporter
    from meldctl.cli.signals import stopping_on_signals
    from meldctl.training.features import build_feature_cache

    with stopping_on_signals() as stop, RichReporter() as reporter:
        summary = build_feature_cache(
            settings.data, settings.model, settings.train, splits=chosen, reporter=reporter,
            should_stop=stop, stop_signal=lambda: stop.requested,
        )  # fmt: skip
    if as_json:
        print_json(summary.to_json())
        return
    table = Table(
        title=f"feature cache in {summary.data_dir} ({summary.seconds:.1f} s, {summary.processes} process(es))"
    )
    for column in ("split", "modality", "rows", "valid"):
        table.add_column(column)
    for split, kinds in summary.splits.items():
        for modality, counts in kinds.items():
            table.add_row(split, modality, str(counts["rows"]), str(counts["valid"]))
    console.print(table)


@app.command("list")
def list_(
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON on stdout.")] = False,
) -> None:
    """The cache folders under the data folder: kind, key, complete splits, size."""
    from meldctl.training.features import list_caches

    found = list_caches(resolve_settings(data={"data_dir": data_dir}).data.data_dir)
    if as_json:
        print_json(found)
        return
    table = Table(title="feature caches")
    for column in ("kind", "key", "complete splits", "MB"):
        table.add_column(column)
    for entry in found:
        table.add_row(entry["kind"], entry["key"], ",".join(entry["complete"]), f"{entry['bytes'] / 1e6:.1f}")
    console.print(table)
