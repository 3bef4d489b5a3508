"""Predict emotion and sentiment for clips and texts with a loaded checkpoint, through the training preprocessing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from meldctl.errors import MeldError
from meldctl.model.checkpoint import LoadedCheckpoint, load_checkpoint
from meldctl.training import distributed


@dataclass
class Prediction:
    clip: str | None
    text: str | None
    emotion: dict[str, float]
    sentiment: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def top_emotion(self) -> str:
        return max(self.emotion, key=self.emotion.__getitem__)

    @property
    def top_sentiment(self) -> str:
        return max(self.sentiment, key=self.sentiment.__getitem__)

    def to_json(self, top_k: int | None = None) -> dict[str, Any]:
        out = {
            "clip": self.clip,
            "text": self.text,
            "emotion": self.emotion,
            "sentiment": self.sentiment,
            "top_emotion": self.top_emotion,
            "top_sentiment": self.top_sentiment,
        }
        if top_k:
            out["top_emotions"] = sorted(self.emotion.items(), key=lambda kv: -kv[1])[:top_k]
        if self.warnings:
            out["warnings"] = self.warnings
        return out


class Predictor:
    """A checkpoint loaded once, turning (clip, text) pairs into probabilities.

    Inputs go through the same functions as training (`read_video`, `log_mel_features`, the checkpoint's
    tokenizer) with the preprocessing parameters stored in the checkpoint.
    """

    def __init__(self, loaded: LoadedCheckpoint, device: torch.device) -> None:
        self.loaded, self.device = loaded, device
        self.model = loaded.model.eval()
        self.modalities = loaded.model.config.modalities
        self.preprocess = loaded.preprocess

    @classmethod
    def from_path(cls, checkpoint: Path, device: str = "auto") -> Predictor:
        torch_device = distributed.resolve_device(device)
        return cls(load_checkpoint(checkpoint, torch_device), torch_device)

    @property
    def needs_clip(self) -> bool:
        return bool({"audio", "video"} & set(self.modalities))

    def inputs(self, clip: Path | None, text: str | None) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Model inputs for one utterance (batch of one) and any warnings.

        Raises:
            MeldError: a missing or unreadable clip, a clip without the stream the model needs, empty text.
        """
        from meldctl.media.audio import read_clip_audio
        from meldctl.media.features import log_mel_features
        from meldctl.media.video import read_video

        batch, warnings = {}, []
        if self.needs_clip and clip is None:
            raise MeldError(f"this checkpoint uses {','.join(self.modalities)}: give a clip to predict on")
        if "text" in self.modalities:
            if not text or not text.strip():
                raise MeldError("empty text: this checkpoint reads the utterance text", hint='pass --text "..."')
            limit = self.preprocess.max_tokens
            tokens = self.loaded.tokenizer(
                text, truncation=True, max_length=limit, return_tensors="pt", return_overflowing_tokens=False
            )
            full = len(self.loaded.tokenizer(text)["input_ids"])
            if full > limit:
                warnings.append(f"text truncated to the model's {limit} tokens (it has {full})")
            batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        if "video" in self.modalities:
            batch["video"] = read_video(clip, self.preprocess)[None]  # [1, C, T, H, W]
        if "audio" in self.modalities:
            wave = read_clip_audio(clip, self.preprocess.sample_rate)
            batch["audio"] = log_mel_features(wave, self.preprocess)[None]  # [1, 1, n_mels, frames]
        return {k: v.to(self.device) for k, v in batch.items()}, warnings

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.model(batch)
        return {head: values.float().softmax(1)[0].cpu() for head, values in logits.items()}

    def predict(self, clip: Path | None, text: str | None) -> Prediction:
        start = time.perf_counter()
        batch, warnings = self.inputs(clip, text)
        probs = self.forward(batch)
        config = self.model.config
        return Prediction(
            clip=str(clip) if clip is not None else None,
            text=text,
            emotion={label: float(p) for label, p in zip(config.emotions, probs["emotion"], strict=True)},
            sentiment={label: float(p) for label, p in zip(config.sentiments, probs["sentiment"], strict=True)},
            warnings=warnings,
            seconds=time.perf_counter() - start,
        )


def newest_checkpoint(runs_root: Path) -> Path | None:
    """The most recently written `runs/*/best.pt`, for predict without --ckpt."""
    found = sorted(Path(runs_root).glob("*/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
