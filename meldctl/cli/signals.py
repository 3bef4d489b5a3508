"""Ctrl-C and SIGTERM for long commands: a polite stop request, then one line and exit code 130 or 143."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.markup import escape

from meldctl.cli.common import console
from meldctl.errors import Interrupted
from meldctl.training.signals import GracefulStop


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[GracefulStop]:
    """Turn SIGINT/SIGTERM into `stop()` being true; an `Interrupted` that results ends the command cleanly."""
    with GracefulStop() as stop:
        try:
            yield stop
        except Interrupted as exc:
            signal = exc.signal or stop.requested
            console.print(f"[yellow]Stopped by {signal or 'a signal'}:[/] {escape(exc.message)}.", soft_wrap=True)
            if exc.hint:
                console.print(f"[dim]Hint: {escape(exc.hint)}[/]", soft_wrap=True)
            raise SystemExit(130 if signal == "SIGINT" else 143) from None
