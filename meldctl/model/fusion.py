"""The multimodal model: per-modality encoders, late fusion, an emotion head and a sentiment head."""

from __future__ import annotations

import torch
from torch import nn

from meldctl.model.audio import AudioEncoder
from meldctl.model.config import ModelConfig
from meldctl.model.text import TextEncoder, build_text_from_config, load_pretrained_text
from meldctl.model.video import VideoEncoder, build_r3d18


class MeldModel(nn.Module):
    """Late fusion of the configured modalities, answering from whichever of them an utterance has.

    `forward` takes a batch dict. Text comes as `input_ids`/`attention_mask` `[B, L]` or as cached
    `text_features`; video as `video` `[B, C, T, H, W]` or cached `video_features` `[B, 512]`; audio as `audio`
    `[B, 1, n_mels, frames]` with `audio_length` `[B]` (valid frames). `{modality}_present` `[B]` (bool) says
    which rows have a modality; a modality whose inputs are absent from the batch is missing for every row.
    A missing modality's projection is replaced by a learned stand-in, and in training each present modality
    is hidden with probability `config.modality_dropout` (never all of a row's), so one checkpoint predicts
    from any subset of its modalities. Returns logits `{"emotion": [B, 7], "sentiment": [B, 3]}`.
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
        # What a missing modality contributes: learned, so that "absent" is a state the fusion layer knows.
        self.stand_ins = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(config.projection_dim)) for m in config.modalities}
        )
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
        size = batch_size(batch)
        present = {m: self._present(batch, m, size) for m in self.config.modalities}
        if self.training and self.config.modality_dropout > 0 and len(present) > 1:
            present = self._hide(present)
        parts = []
        for modality, rows in present.items():
            stand_in = self.stand_ins[modality].expand(size, -1)  # [B, P]
            if rows.any():
                parts.append(torch.where(rows[:, None], self._encode(modality, batch), stand_in))
            else:
                parts.append(stand_in)
        fused = self.fusion(torch.cat(parts, dim=1))  # [B, fusion_dim]
        return {"emotion": self.emotion_head(fused), "sentiment": self.sentiment_head(fused)}

    def _present(self, batch: dict[str, torch.Tensor], modality: str, size: int) -> torch.Tensor:
        """Rows that have `modality` `[B]` (bool): the batch's mask, all rows, or none without inputs."""
        has_inputs = any(key in batch for key in MODALITY_INPUTS[modality])
        rows = batch.get(f"{modality}_present")
        device = self.emotion_head.weight.device
        if not has_inputs:
            return torch.zeros(size, dtype=torch.bool, device=device)
        return torch.ones(size, dtype=torch.bool, device=device) if rows is None else rows.to(torch.bool)

    def _hide(self, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Modality dropout: hide each present modality with probability p, keeping at least one per row."""
        stacked = torch.stack(list(present.values()), dim=1)  # [B, M]
        hidden = torch.rand(stacked.shape, device=stacked.device) < self.config.modality_dropout
        kept = stacked & ~hidden
        kept = torch.where(kept.any(dim=1, keepdim=True), kept, stacked)  # a row never loses everything
        return {m: kept[:, i] for i, m in enumerate(present)}

    def _encode(self, modality: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The modality's projection for every row `[B, P]` (absent rows' values are replaced afterwards)."""
        if modality == "text":
            feats = batch.get("text_features")
            if feats is None:
                feats = self.text.features(batch["input_ids"], batch["attention_mask"])
            return self.text.project(feats)
        if modality == "video":
            feats = batch.get("video_features")
            if feats is None:
                feats = self.video.features(batch["video"])
            return self.video.project(feats)
        mel = batch["audio"]
        lengths = batch.get("audio_length")
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[-1], device=mel.device)
        return self.audio(mel, lengths)


MODALITY_INPUTS: dict[str, tuple[str, ...]] = {
    "text": ("input_ids", "text_features"),
    "audio": ("audio",),
    "video": ("video", "video_features"),
}
"""The batch keys that carry each modality (raw or cached)."""


def batch_size(batch: dict[str, torch.Tensor]) -> int:
    """Rows of a model batch, from whichever input or presence mask it carries."""
    for key in ("input_ids", "text_features", "audio", "video", "video_features"):
        if key in batch:
            return int(batch[key].shape[0])
    for key, value in batch.items():
        if key.endswith("_present"):
            return int(value.shape[0])
    raise ValueError("the batch holds no model input")


def build_model(config: ModelConfig, *, pretrained: bool = True) -> MeldModel:
    """Build the model that `config` describes.

    Args:
        config: The architecture.
        pretrained: Load the encoders' pretrained weights (text by name or folder, video by the
            `video_weights` setting). False builds the architecture only, for a checkpoint's weights;
            the text encoder then comes from `config.text_config`.

    Returns:
        The model in eval mode; `model.config` carries the text encoder's config so a checkpoint can rebuild
        it offline.
    """
    text = video = audio = None
    if "text" in config.modalities:
        if pretrained or config.text_config is None:
            encoder = load_pretrained_text(config.text_model)
        else:
            encoder = build_text_from_config(config.text_config)
        config = config.model_copy(update={"text_config": encoder.config.to_diff_dict()})
        text = TextEncoder(encoder, config.projection_dim, frozen=config.freeze_text, layer_mix=config.text_layer_mix)
    if "video" in config.modalities:
        video = VideoEncoder(
            build_r3d18(config.video_weights, pretrained=pretrained),
            config.projection_dim,
            frozen=config.freeze_video,
        )
    if "audio" in config.modalities:
        audio = AudioEncoder(config.projection_dim, config.n_mels)
    # Eval mode until a trainer says otherwise: frozen encoders that compute cached features must never run
    # with batch statistics (their BatchNorm would move, and the cache key with it).
    return MeldModel(config, text=text, video=video, audio=audio).eval()
