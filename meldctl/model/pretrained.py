"""What the text and video encoders share: a pretrained module that is either fine-tuned or frozen."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class PretrainedEncoder(nn.Module):
    """An encoder around a pretrained module, kept as the attribute `pretrained_attr` (its name is part of the
    checkpoints' weight names). Frozen, that module takes no gradient and stays in eval mode whatever `train()`
    asks: its dropout must not perturb the features nor its BatchNorm statistics drift, since its features are
    what the feature cache stores."""

    pretrained_attr: str
    frozen: bool

    def set_frozen(self, frozen: bool) -> None:
        """Freeze the pretrained module (no gradient) or leave it to be fine-tuned."""
        self.frozen = frozen
        if frozen:
            getattr(self, self.pretrained_attr).requires_grad_(False)

    def train(self, mode: bool = True) -> PretrainedEncoder:
        """Set training mode; a frozen pretrained module stays in eval mode."""
        super().train(mode)
        if self.frozen:
            getattr(self, self.pretrained_attr).eval()
        return self

    def pretrained_grad(self) -> contextlib.AbstractContextManager[None]:
        """Gradients through the pretrained module as the caller has them, and never when it is frozen."""
        return torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen)
