"""`meldctl doctor`: what a run needs (FFmpeg, CUDA, weights, disk, AWS) and whether it is there."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from meldctl.cli.common import console, print_json, resolve_settings

_MARKS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "missing": "[bold red]missing[/]"}


def doctor(
    for_command: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="Exit 1 when something this command needs is missing: prepare, train, eval, predict or remote.",
        ),  # fmt: skip
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON on stdout.")] = False,
) -> None:
    """Check FFmpeg, CUDA and GPUs, cached weights, disk space, AWS credentials and region (never secrets) and the
    SageMaker SDK, for the resolved settings. Reads only; makes no network call."""
    from meldctl.doctor import COMMANDS, missing_for, run_checks

    if for_command is not None and for_command not in COMMANDS:
        raise typer.BadParameter(f"choose one of {', '.join(COMMANDS)}", param_hint="--for")
    checks = run_checks(resolve_settings())
    missing = missing_for(checks, for_command) if for_command else []
    if as_json:
        print_json({"checks": [check.__dict__ for check in checks], "missing_for": [c.name for c in missing]})
    else:
        table = Table(title="meldctl doctor")
        for column in ("check", "status", "found", "needed by"):
            table.add_column(column, overflow="fold")
        for check in checks:
            table.add_row(check.name, _MARKS[check.status], escape(check.detail), ", ".join(check.needed_by))
        console.print(table)
    for check in missing:
        console.print(f"[bold red]Missing for {for_command}:[/] {check.name}: {escape(check.detail)}", soft_wrap=True)
    if missing:
        raise typer.Exit(1)
