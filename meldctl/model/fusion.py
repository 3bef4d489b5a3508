"""The multimodal model: per-modality encoders, late fusion, an emotion head and a sentiment head."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from meldctl.model.audio import AudioEncoder
from meldctl.model.config import ModelConfig
from meldctl.model.text import TextEncoder, build_text_from_config, load_pretrained_text
from meldctl.model.video import VideoEncoder, build_r3d18


class MeldModel(nn.Module):
    """Late fusion of the configured modalities.

    `forward` takes a batch dict. Text comes as `input_ids`/`attention_mask` `[B, L]` or as cached
    `text_features` `[B, D]`; video as `video` `[B, C, T, H, W]` or cached `video_features` `[B, 512]`;
    audio as `audio` `[B, 1, n_mels, frames]`. It returns logits `{"emotion": [B, 7], "sentiment": [B, 3]}`.
    """

    def __init__(
        self,
        config: ModelConfig,
        text: TextEncoder | None,
        video: VideoEncoder | None,
        audio: AudioEncoder | None,
    ) -> None:
        super().__init__()
        self.config = config
        self.text, self.video, self.audio = text, video, audio
        width = config.projection_dim * len(config.modalities)
        self.fusion = nn.Sequential(
            nn.Linear(width, config.fusion_dim),
            nn.BatchNorm1d(config.fusion_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
        )
        self.emotion_head = nn.Linear(config.fusion_dim, len(config.emotions))
        self.sentiment_head = nn.Linear(config.fusion_dim, len(config.sentiments))

    def train(self, mode: bool = True) -> MeldModel:
        super().train(mode)
        # Frozen backbones stay in eval mode: their BatchNorm statistics and dropout must not drift.
        if self.text is not None and self.text.frozen:
            self.text.encoder.eval()
        if self.video is not None and self.video.frozen:
            self.video.backbone.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = []
        for modality in self.config.modalities:
            if modality == "text":
                feats = batch.get("text_features")
                if feats is None:
                    feats = self.text.features(batch["input_ids"], batch["attention_mask"])
                parts.append(self.text.project(feats))
            elif modality == "video":
                feats = batch.get("video_features")
                if feats is None:
                    feats = self.video.features(batch["video"])
                parts.append(self.video.project(feats))
            else:
                parts.append(self.audio(batch["audio"]))
        fused = self.fusion(torch.cat(parts, dim=1))  # [B, fusion_dim]
        return {"emotion": self.emotion_head(fused), "sentiment": self.sentiment_head(fused)}


def build_model(config: ModelConfig, *, pretrained: bool = True) -> MeldModel:
    """Build the model that `config` describes.

    Args:
        config: The architecture.
        pretrained: Load the encoders' pretrained weights (text by name or folder, video by the
            `video_weights` setting). False builds the architecture only, for a checkpoint's weights;
            the text encoder then comes from `config.text_config`.

    Returns:
        The model; `model.config` carries the text encoder's config so a checkpoint can rebuild it offline.
    """
    text = video = audio = None
    if "text" in config.modalities:
        if pretrained or config.text_config is None:
            encoder = load_pretrained_text(config.text_model)
        else:
            encoder = build_text_from_config(config.text_config)
        config = replace(config, text_config=encoder.config.to_diff_dict())
        text = TextEncoder(encoder, config.projection_dim, frozen=config.freeze_text, layer_mix=config.text_layer_mix)
    if "video" in config.modalities:
        video = VideoEncoder(
            build_r3d18(config.video_weights, pretrained=pretrained),
            config.projection_dim,
            frozen=config.freeze_video,
        )
    if "audio" in config.modalities:
        audio = AudioEncoder(config.projection_dim)
    return MeldModel(config, text=text, video=video, audio=audio)
