"""Predict emotion and sentiment for clips and texts with a loaded checkpoint, through the training preprocessing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
    missing: list[str] = field(default_factory=list)
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
        if self.missing:
            out["missing"] = self.missing
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass
class PreparedInput:
    """One utterance decoded into model inputs, ready to be batched by `Predictor.run`.

    Attributes:
        name: What the answer calls the clip: the path as given, or an upload's file name.
        text: The utterance text.
        sample: Unbatched model inputs; only `Predictor.run` reads them.
        missing: Modalities of the checkpoint that this input lacks.
        warnings: Things the user should know about this input (truncated text, a missing stream).
        seconds: Time spent decoding and preprocessing.
    """

    name: str | None
    text: str | None
    sample: dict[str, torch.Tensor]
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Predictor:
    """A checkpoint loaded once, turning (clip, text) pairs into probabilities.

    Inputs go through the same functions as training (`read_video`, `log_mel_features`, the checkpoint's
    tokenizer) with the preprocessing parameters stored in the checkpoint. `prepare` (decoding, safe to call
    from several threads at once) and `run` (one batched forward, one caller at a time) are separate so that a
    server can decode requests in parallel and batch the forward.
    """

    def __init__(self, loaded: LoadedCheckpoint, device: torch.device) -> None:
        self.loaded, self.device = loaded, device
        self.checkpoint = loaded.path
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

    def describe(self) -> dict[str, Any]:
        """What a health check reports: the checkpoint, its modalities and labels, the device, the version."""
        from meldctl import __version__

        config = self.model.config
        return {
            "checkpoint": str(self.checkpoint),
            "modalities": list(self.modalities),
            "labels": {"emotion": list(config.emotions), "sentiment": list(config.sentiments)},
            "device": str(self.device),
            "meldctl_version": __version__,
        }

    def prepare(
        self, clip: Path | None, text: str | None, *, strict: bool = False, name: str | None = None
    ) -> PreparedInput:
        """Decode one utterance into model inputs.

        Args:
            clip: The clip (any container FFmpeg reads); None for a text-only checkpoint.
            text: The utterance text.
            strict: Refuse a clip that lacks a stream the checkpoint uses instead of answering without it.
            name: What the answer calls the clip (default: the path as given).

        Raises:
            MeldError: a missing or unreadable clip, a clip without the stream the model needs, empty text.
        """
        from meldctl.media.audio import read_clip_audio
        from meldctl.media.video import read_video

        start = time.perf_counter()
        if self.needs_clip and clip is None:
            raise MeldError(f"this checkpoint uses {','.join(self.modalities)}: give a clip to predict on")
        video = read_video(clip, self.preprocess) if "video" in self.modalities else None
        waveform = read_clip_audio(clip, self.preprocess.sample_rate) if "audio" in self.modalities else None
        prepared = self._prepared(text, video, waveform, name if name is not None else _name(clip))
        prepared.seconds = time.perf_counter() - start
        return prepared

    def prepare_media(
        self,
        text: str | None,
        *,
        frames: list[np.ndarray] | None,
        waveform: torch.Tensor | None,
        name: str | None = None,
    ) -> PreparedInput:
        """Model inputs from media decoded elsewhere (a span of a long video).

        Args:
            text: The utterance text.
            frames: `num_frames` RGB frames as `FrameConverter(preprocess)` returns them, or None.
            waveform: float32 mono `[samples]` at `preprocess.sample_rate`, the utterance's span, or None.
            name: What the answer calls this utterance.
        """
        from meldctl.media.video import clip_tensor

        start = time.perf_counter()
        video = clip_tensor(frames, self.preprocess) if frames is not None and "video" in self.modalities else None
        prepared = self._prepared(text, video, waveform if "audio" in self.modalities else None, name)
        prepared.seconds = time.perf_counter() - start
        return prepared

    def _prepared(
        self, text: str | None, video: torch.Tensor | None, waveform: torch.Tensor | None, name: str | None
    ) -> PreparedInput:
        from meldctl.media.features import log_mel_features

        sample, warnings = {}, []
        if "text" in self.modalities:
            if not text or not text.strip():
                raise MeldError("empty text: this checkpoint reads the utterance text", hint='pass --text "..."')
            limit = self.preprocess.max_tokens
            tokens = self.loaded.tokenizer(text, truncation=True, max_length=limit, return_tensors="pt")
            full = len(self.loaded.tokenizer(text)["input_ids"])
            if full > limit:
                warnings.append(f"text truncated to the model's {limit} tokens (it has {full})")
            sample["input_ids"], sample["attention_mask"] = tokens["input_ids"][0], tokens["attention_mask"][0]
        if video is not None:
            sample["video"] = video  # [C, T, H, W]
        if waveform is not None:
            sample["audio"] = log_mel_features(waveform, self.preprocess)  # [1, n_mels, frames]
        return PreparedInput(name=name, text=text, sample=sample, warnings=warnings)

    @torch.no_grad()
    def run(self, inputs: list[PreparedInput]) -> list[Prediction]:
        """One batched forward over prepared inputs; answers in the same order."""
        if not inputs:
            return []
        start = time.perf_counter()
        batch = _collate([p.sample for p in inputs])
        logits = self.model({k: v.to(self.device) for k, v in batch.items()})
        probs = {head: values.float().softmax(1).cpu() for head, values in logits.items()}
        config, share = self.model.config, (time.perf_counter() - start) / len(inputs)
        return [
            Prediction(
                clip=p.name,
                text=p.text,
                emotion={label: float(v) for label, v in zip(config.emotions, probs["emotion"][i], strict=True)},
                sentiment={label: float(v) for label, v in zip(config.sentiments, probs["sentiment"][i], strict=True)},
                warnings=list(p.warnings),
                missing=list(p.missing),
                seconds=p.seconds + share,
            )
            for i, p in enumerate(inputs)
        ]

    def predict(self, clip: Path | None, text: str | None, *, strict: bool = False) -> Prediction:
        """`prepare` and `run` for one utterance."""
        return self.run([self.prepare(clip, text, strict=strict)])[0]


def _name(clip: Path | None) -> str | None:
    return str(clip) if clip is not None else None


def _collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in ("input_ids", "attention_mask"):
            batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)  # [B, L]
        else:
            batch[key] = torch.stack(values)
    return batch


def newest_checkpoint(runs_root: Path) -> Path | None:
    """The most recently written `runs/*/best.pt`, for predict without --ckpt."""
    found = sorted(Path(runs_root).glob("*/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
