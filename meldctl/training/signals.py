"""Ctrl-C and SIGTERM as a polite request: the loop finishes its batch, saves last.pt and returns.

A second Ctrl-C raises KeyboardInterrupt at once, for a user who really wants out.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into `requested`; restores the old handlers on exit."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.requested is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> GracefulStop:
        # Signal handlers can only be set from the main thread (a notebook's worker thread cannot).
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
