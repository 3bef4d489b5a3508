"""The optimiser, its learning-rate schedule and mixed precision of a training run."""

from __future__ import annotations

import math
from typing import Any

import torch

from meldctl.model import MeldModel
from meldctl.settings import TrainSettings


def build_optimizer(model: MeldModel, train: TrainSettings) -> torch.optim.AdamW:
    """AdamW; weight decay on weight matrices only (not on biases, norms, the layer mix or the stand-ins).

    An unfrozen encoder trains at `encoder_lr`, the rest at `lr`.
    """
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        encoder = name.startswith(("text.encoder", "video.backbone"))
        decay = param.ndim >= 2 and not name.startswith("stand_ins")
        groups.setdefault((encoder, decay), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": train.encoder_lr if encoder else train.lr,
                "weight_decay": train.weight_decay if decay else 0.0,
            }
            for (encoder, decay), params in sorted(groups.items())
        ]
    )


def build_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> Any:
    """Linear warm-up over the first `warmup_ratio` of the steps, then cosine decay to zero."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))  # cosine decay to zero

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def mixed_precision(device: torch.device, precision: str) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """The autocast dtype and the gradient scaler (fp16 only) for `precision` on `device`; none on the CPU."""
    if device.type != "cuda" or precision == "fp32":
        return None, None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")
