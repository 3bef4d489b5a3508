"""Confusion-matrix figures, shared by training (TensorBoard) and eval (PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> Any:
    """A matplotlib Figure with counts and row-normalised rates side by side.

    Built with `matplotlib.figure.Figure` directly, so no GUI backend is ever touched.
    """
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(2 + 1.1 * len(labels) * 2, 1.5 + 0.9 * len(labels)), layout="constrained")
    for ax, values, name, fmt in zip(
        fig.subplots(1, 2), (counts, rates), ("counts", "row-normalised"), ("d", ".2f"), strict=True
    ):
        ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        ax.set(
            xticks=range(len(labels)),
            yticks=range(len(labels)),
            xlabel="predicted",
            ylabel="true",
            title=f"{title} ({name})",
        )
        ax.set_xticklabels(labels, rotation=45, ha="right")
        ax.set_yticklabels(labels)
        threshold = values.max() / 2
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j, i, format(v, fmt), ha="center", va="center", fontsize=8, color="white" if v > threshold else "black"
            )
    return fig
