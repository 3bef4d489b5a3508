"""Cross-entropy per head with label smoothing and class weights from the training label counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def class_weights(counts: Sequence[int], mode: str) -> torch.Tensor | None:
    """Per-class loss weights, normalised to a mean of 1.

    `inverse` is 1/frequency; `sqrt` is its square root. MELD is about half neutral with fear and disgust at
    under 3%: full inverse weights push the model off neutral and cost weighted F1, the square root keeps
    rare classes visible without that. Classes absent from train get the largest present weight.
    """
    if mode == "none":
        return None
    counts_t = torch.tensor(counts, dtype=torch.float64)
    present = counts_t > 0
    weights = torch.zeros_like(counts_t)
    weights[present] = counts_t[present].sum() / counts_t[present]
    if mode == "sqrt":
        weights = weights.sqrt()
    elif mode != "inverse":
        raise ValueError(f"unknown class weight mode {mode!r}")
    weights[~present] = weights[present].max() if present.any() else 1.0
    return (weights / weights.mean()).float()


class MultiTaskLoss(nn.Module):
    """Sum of the emotion and sentiment cross-entropies; returns the total and each part."""

    def __init__(
        self, emotion_weights: torch.Tensor | None, sentiment_weights: torch.Tensor | None, label_smoothing: float
    ) -> None:
        super().__init__()
        self.emotion = nn.CrossEntropyLoss(weight=emotion_weights, label_smoothing=label_smoothing)
        self.sentiment = nn.CrossEntropyLoss(weight=sentiment_weights, label_smoothing=label_smoothing)

    def forward(
        self, logits: dict[str, torch.Tensor], emotion: torch.Tensor, sentiment: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emotion_loss = self.emotion(logits["emotion"].float(), emotion)
        sentiment_loss = self.sentiment(logits["sentiment"].float(), sentiment)
        total = emotion_loss + sentiment_loss
        # Detached tensors, not floats: reading them would wait for the GPU at every step.
        return total, {"emotion": emotion_loss.detach(), "sentiment": sentiment_loss.detach()}
