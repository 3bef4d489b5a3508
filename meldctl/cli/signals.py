"""Ctrl-C and SIGTERM for long commands: a polite stop request; the `Interrupted` that results names its signal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from meldctl.errors import Interrupted
from meldctl.training.signals import GracefulStop


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[GracefulStop]:
    """Turn SIGINT/SIGTERM into `stop()` being true; an `Interrupted` that results carries the signal's name.

    The app (`meldctl.cli`) turns that `Interrupted` into one line and exit code 130 or 143.
    """
    with GracefulStop() as stop:
        try:
            yield stop
        except Interrupted as exc:
            exc.signal = exc.signal or stop.requested
            raise
