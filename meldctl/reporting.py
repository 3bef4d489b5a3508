"""Where long work tells its progress. The CLI draws bars (or plain lines in a log); tests use this silent one."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Progress callbacks of training, evaluation and cache building; every method may be a no-op."""

    def progress(self, label: str, done: int, total: int) -> None:
        """A long phase (`label`) has `done` of `total` items."""

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        """An epoch begins with `batches` batches (fewer when resumed part-way)."""

    def batch(self, samples: int, loss: float) -> None:
        """A training batch of `samples` utterances ended with this loss."""

    def epoch_end(self, record: dict[str, Any]) -> None:
        """An epoch ended; `record` holds its metrics (and `improved`)."""

    def note(self, text: str) -> None:
        """Something the user should read."""
