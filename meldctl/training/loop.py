"""One training step, the running totals of an epoch, and one evaluation pass: every dependency is an argument."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from meldctl.errors import Interrupted
from meldctl.labels import MODALITIES
from meldctl.model.context import CONTEXT_KEYS
from meldctl.training.losses import MultiTaskLoss

MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "text_features",
    "video",
    "video_features",
    "audio",
    "audio_length",
    *(f"{m}_present" for m in MODALITIES),
    *CONTEXT_KEYS,
)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """The model's inputs of a collated batch, on `device` (labels and indices stay behind)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in MODEL_INPUTS}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA; a no-op on CPU or with fp32."""
    if device.type != "cuda" or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


@dataclass
class Meter:
    """Running sums of an epoch: loss parts and hits, kept on the device (no sync per step) until read."""

    sums: torch.Tensor | None = None  # [5]: loss, emotion loss, sentiment loss, emotion hits, sentiment hits
    samples: int = 0
    seconds: float = 0.0
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def add(
        self, loss: torch.Tensor, parts: dict[str, torch.Tensor], logits: dict[str, torch.Tensor], batch: Any
    ) -> None:
        n = len(batch["emotion"])
        emotion, sentiment = batch["emotion"].to(loss.device), batch["sentiment"].to(loss.device)
        step = torch.stack(
            [
                loss.detach() * n,
                parts["emotion"] * n,
                parts["sentiment"] * n,
                (logits["emotion"].argmax(1) == emotion).sum().float(),
                (logits["sentiment"].argmax(1) == sentiment).sum().float(),
            ]
        ).double()
        self.sums = step if self.sums is None else self.sums + step
        self.samples += n

    def state(self) -> dict[str, Any]:
        """What a mid-epoch checkpoint keeps, so that the resumed epoch reports the same totals."""
        sums = [0.0] * 5 if self.sums is None else self.sums.tolist()
        return {"sums": sums, "samples": self.samples, "seconds": self.seconds + time.perf_counter() - self._started}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Meter:
        if not state:
            return cls()
        return cls(torch.tensor(state["sums"], dtype=torch.float64), int(state["samples"]), float(state["seconds"]))

    def summary(self, total_samples: float | None = None, total_loss: float | None = None) -> dict[str, float]:
        """Means over the epoch; `total_*` override the loss with the sum over every rank."""
        sums = [0.0] * 5 if self.sums is None else self.sums.tolist()
        n = max(self.samples, 1)
        seconds = self.seconds + time.perf_counter() - self._started
        return {
            "train_loss": (total_loss / max(total_samples, 1.0)) if total_loss is not None else sums[0] / n,
            "train_emotion_loss": sums[1] / n,
            "train_sentiment_loss": sums[2] / n,
            "train_emotion_accuracy": sums[3] / n,
            "train_sentiment_accuracy": sums[4] / n,
            "train_samples_per_s": self.samples / seconds if seconds > 0 else 0.0,
            "train_seconds": seconds,
        }


def train_step(
    model: nn.Module,
    criterion: MultiTaskLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: dict[str, Any],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Forward, loss, backward, clip, step: one batch. Returns the loss, its parts and the logits."""
    emotion, sentiment = batch["emotion"].to(device), batch["sentiment"].to(device)
    with autocast(device, amp_dtype):
        logits = model(to_device(batch, device))
    loss, parts = criterion(logits, emotion, sentiment)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    return loss, parts, logits


@dataclass
class Predictions:
    """Gold labels, predicted probabilities and which modalities each row had, in loader order."""

    index: torch.Tensor  # [N]
    emotion: torch.Tensor  # [N]
    sentiment: torch.Tensor  # [N]
    emotion_probs: torch.Tensor  # [N, 7]
    sentiment_probs: torch.Tensor  # [N, 3]
    loss: float
    present: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> [N] bool


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    *,
    criterion: MultiTaskLoss | None = None,
    amp_dtype: torch.dtype | None = None,
    on_batch: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Predictions:
    """Run the model over `loader` in eval mode and collect probabilities (and the loss, given a criterion).

    Raises:
        Interrupted: `should_stop()` turned true (polled every batch).
    """
    model.eval()
    keep: dict[str, list[torch.Tensor]] = {k: [] for k in ("index", "emotion", "sentiment", "ep", "sp")}
    present: dict[str, list[torch.Tensor]] = {}
    loss_sum, samples = 0.0, 0
    for batch in loader:
        with autocast(device, amp_dtype):
            logits = model(to_device(batch, device))
        if criterion is not None:
            loss, _ = criterion(logits, batch["emotion"].to(device), batch["sentiment"].to(device))
            loss_sum += loss.item() * len(batch["emotion"])
        samples += len(batch["emotion"])
        for key, out in (("index", "index"), ("emotion", "emotion"), ("sentiment", "sentiment")):
            keep[out].append(batch[key])
        keep["ep"].append(logits["emotion"].float().softmax(1).cpu())
        keep["sp"].append(logits["sentiment"].float().softmax(1).cpu())
        for key, value in batch.items():
            if key.endswith("_present"):
                present.setdefault(key.removesuffix("_present"), []).append(value.bool())
        on_batch(len(batch["emotion"]))
        if should_stop():
            raise Interrupted(f"stopped after scoring {samples} utterances")
    cat = {k: torch.cat(v) if v else torch.empty(0) for k, v in keep.items()}
    # Back to row order: batches that keep dialogues whole need not follow it.
    order = cat["index"].argsort()
    cat = {k: v[order] if len(v) else v for k, v in cat.items()}
    present = {m: [torch.cat(v)[order]] for m, v in present.items()}
    return Predictions(
        cat["index"],
        cat["emotion"],
        cat["sentiment"],
        cat["ep"],
        cat["sp"],
        loss_sum / max(samples, 1),
        {m: torch.cat(v) for m, v in present.items()},
    )
