"""TensorBoard for a training run: per-epoch scalars and, at each new best, the dev confusion matrices."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from meldctl.io import disk_full
from meldctl.labels import EMOTIONS, SENTIMENTS


class TensorBoard:
    """Per-epoch scalars and confusion matrices on rank 0; the folder is created with the first event."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.writer = folder, None

    def _open(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder))
        return self.writer

    def epoch(self, record: dict[str, Any], dev: dict[str, Any], improved: bool) -> None:
        """Log an epoch's record (`group_name` keys become `group/name`) and, when `improved`, its confusions.

        Raises:
            MeldError: the disk is full.
        """
        try:
            self._write(record, dev, improved)
        except OSError as exc:  # TensorBoard's writer thread reports a full disk here
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise disk_full(self.folder, "the TensorBoard logs") from None

    def _write(self, record: dict[str, Any], dev: dict[str, Any], improved: bool) -> None:
        writer, step = self._open(), record["epoch"]
        for key, value in record.items():
            if key != "epoch":
                group, _, name = key.partition("_")
                writer.add_scalar(f"{group}/{name}", value, step)
        if improved:  # the confusion matrices of the checkpoint that best.pt holds, at each new best
            from meldctl.training.plots import confusion_figure

            for head, labels in (("emotion", EMOTIONS), ("sentiment", SENTIMENTS)):
                writer.add_figure(f"dev/confusion_{head}", confusion_figure(dev[head]["confusion"], labels, head), step)
        writer.flush()

    def close(self, hparams: dict[str, Any], final: dict[str, float]) -> None:
        """Record the run's hyperparameters beside its best dev scores, and close the writer."""
        if self.writer is None:
            return
        if final:
            self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        self.writer.close()
