"""One training epoch and one evaluation pass: every dependency is an argument."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from meldctl.training.losses import MultiTaskLoss

MODEL_INPUTS = ("input_ids", "attention_mask", "text_features", "video", "video_features", "audio")


@dataclass
class EpochStats:
    loss: float
    emotion_loss: float
    sentiment_loss: float
    emotion_accuracy: float
    sentiment_accuracy: float
    samples: int
    seconds: float
    interrupted: bool = False

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Predictions:
    """Gold labels and predicted probabilities of one pass, in loader order."""

    index: torch.Tensor  # [N]
    emotion: torch.Tensor  # [N]
    sentiment: torch.Tensor  # [N]
    emotion_probs: torch.Tensor  # [N, 7]
    sentiment_probs: torch.Tensor  # [N, 3]
    loss: float


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in MODEL_INPUTS}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA; a no-op on CPU or with fp32."""
    if device.type != "cuda" or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def train_one_epoch(
    model: nn.Module,
    criterion: MultiTaskLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    on_batch: Callable[[int, float], None] = lambda n, loss: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> EpochStats:
    """Train for one pass over `loader`; stops early (and says so) when `should_stop()` turns true."""
    model.train()
    totals = torch.zeros(5, dtype=torch.float64)  # loss, emotion loss, sentiment loss, emotion hits, sentiment hits
    samples, start, interrupted = 0, time.perf_counter(), False
    params = [p for p in model.parameters() if p.requires_grad]
    for batch in loader:
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
            nn.utils.clip_grad_norm_(params, grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        n = len(emotion)
        samples += n
        totals += torch.tensor(
            [
                loss.item() * n,
                parts["emotion"] * n,
                parts["sentiment"] * n,
                (logits["emotion"].argmax(1) == emotion).sum().item(),
                (logits["sentiment"].argmax(1) == sentiment).sum().item(),
            ],
            dtype=torch.float64,
        )
        on_batch(n, loss.item())
        if should_stop():
            interrupted = True
            break
    mean = (totals / max(samples, 1)).tolist()
    return EpochStats(*mean, samples=samples, seconds=time.perf_counter() - start, interrupted=interrupted)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    *,
    criterion: MultiTaskLoss | None = None,
    amp_dtype: torch.dtype | None = None,
    on_batch: Callable[[int], None] = lambda n: None,
) -> Predictions:
    """Run the model over `loader` in eval mode and collect probabilities (and the loss, given a criterion)."""
    model.eval()
    keep: dict[str, list[torch.Tensor]] = {k: [] for k in ("index", "emotion", "sentiment", "ep", "sp")}
    loss_sum, samples = 0.0, 0
    for batch in loader:
        with autocast(device, amp_dtype):
            logits = model(to_device(batch, device))
        if criterion is not None:
            loss, _ = criterion(logits, batch["emotion"].to(device), batch["sentiment"].to(device))
            loss_sum += loss.item() * len(batch["emotion"])
        samples += len(batch["emotion"])
        keep["index"].append(batch["index"])
        keep["emotion"].append(batch["emotion"])
        keep["sentiment"].append(batch["sentiment"])
        keep["ep"].append(logits["emotion"].float().softmax(1).cpu())
        keep["sp"].append(logits["sentiment"].float().softmax(1).cpu())
        on_batch(len(batch["emotion"]))
    cat = {k: torch.cat(v) if v else torch.empty(0) for k, v in keep.items()}
    return Predictions(cat["index"], cat["emotion"], cat["sentiment"], cat["ep"], cat["sp"], loss_sum / max(samples, 1))
