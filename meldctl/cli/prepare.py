"""`meldctl prepare`: MELD (download, local archive or folder, or the embedded sample) to manifests and WAVs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from meldctl.cli.common import console, print_json, resolve_settings


class _CountOrBytes(ProgressColumn):
    """Bytes and speed for the download, `done/total` for extraction and clips."""

    def render(self, task: Task) -> Text:
        if task.fields.get("bytes"):
            return Text.assemble(DownloadColumn().render(task), " ", TransferSpeedColumn().render(task))
        return MofNCompleteColumn().render(task)


class _Bars:
    """Rich progress bars fed by `PrepareEvent`s: bytes for the download, counts for the rest."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event) -> None:  # noqa: ANN001  (a meldctl.prepare.PrepareEvent)
        label = {"download": "download", "extract": "extract"}.get(event.stage, f"clips {event.split}")
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=event.total, bytes=event.stage == "download")
        self.progress.update(self.tasks[label], completed=event.done, total=event.total)


def _table(summary) -> Table:  # noqa: ANN001  (a meldctl.prepare.PrepareSummary)
    from meldctl.data.manifest import STATUSES

    table = Table(title=f"prepare: {summary.data_dir}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("split", *STATUSES, "new WAVs", "no row", "s"):
        table.add_column(column, justify="left" if column == "split" else "right", no_wrap=True)
    for name, split in summary.splits.items():
        counts = [str(split.counts[s]) for s in STATUSES]
        table.add_row(name, *counts, str(split.extracted), str(len(split.no_csv_row)), f"{split.seconds:.1f}")
    return table


def prepare(
    source: Annotated[
        str | None, typer.Option(help="default, sample, labels (the CSVs only), a URL, or a local archive/folder.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder for clips, audio and manifests.")] = None,
    splits: Annotated[str | None, typer.Option(help="Comma-separated splits, e.g. train,dev,test.")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Parallel FFmpeg processes (0: one per core).")] = None,
    mirror: Annotated[str | None, typer.Option(help="Another host's MELD.Raw.tar.gz URL for --source default.")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the downloaded archive.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Fetch MELD, extract 16 kHz mono WAVs and write one manifest per split (reruns skip finished work)."""
    from meldctl.prepare import prepare as run_prepare

    flags = {"source": source, "data_dir": data_dir, "splits": splits, "workers": workers}
    settings = resolve_settings(data={**flags, "mirror": mirror, "sha256": sha256})
    columns = (TextColumn("{task.description}"), BarColumn(), _CountOrBytes(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bars:
        summary = run_prepare(settings.data, progress=_Bars(bars))
    if as_json:
        print_json(summary.to_json())
        return
    console.print(_table(summary))
    for name, split in summary.splits.items():
        if split.no_csv_row:
            console.print(f"{name}: clips with no CSV row (not in the manifest): {', '.join(split.no_csv_row)}")
    if summary.extracted == 0:
        console.print("Nothing to extract: every usable clip already has its WAV.")
