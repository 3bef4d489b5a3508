"""`meldctl config`: show the resolved settings, write a commented meldctl.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_settings, root
from meldctl.errors import MeldError
from meldctl.settings import DEFAULT_CONFIG_FILE, describe_settings, render_toml, to_plain

app = typer.Typer(help="Show the resolved settings or write a settings file.", no_args_is_help=True)


@app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as JSON, sections as objects.")] = False,
) -> None:
    """Print every setting with its value and where it came from (default, toml, env, flag)."""
    if as_json:
        print_json(to_plain(resolve_settings()))
        return
    table = Table(title="meldctl settings", show_lines=False)
    for column in ("setting", "value", "source", "environment variable"):
        table.add_column(column)
    for row in describe_settings(root.config):
        shown = "(unset)" if row.value is None else str(row.value)
        table.add_row(f"{row.section}.{row.key}", shown, row.source, row.env_name)
    console.print(table)


@app.command("init")
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = DEFAULT_CONFIG_FILE,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented settings file with every setting at its default."""
    if path.exists() and not force:
        raise MeldError(f"{path} already exists", hint="add --force to overwrite it")
    from meldctl.io import write_text_atomic

    write_text_atomic(path, render_toml())
    console.print(f"Wrote {path}")
