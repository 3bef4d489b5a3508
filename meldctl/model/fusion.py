"""The multimodal model: per-modality encoders, late fusion, an emotion head and a sentiment head."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from meldctl.model.audio import AudioEncoder
from meldctl.model.config import ModelConfig
from meldctl.model.context import DialogueContext
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

    text: TextEncoder | None
    video: VideoEncoder | None
    audio: AudioEncoder | None

    def __init__(self, config: ModelConfig, encoders: Mapping[str, nn.Module]) -> None:
        """Assemble the model.

        Args:
            config: The architecture.
            encoders: One encoder per modality of `config` (see `ENCODERS` for what each provides).
        """
        super().__init__()
        self.config = config
        # Each encoder is the attribute named after its modality (None when the model lacks it): the
        # checkpoints' weight names (`text.encoder...`, `audio.blocks...`) and the parameter order (which the
        # optimiser state of a `last.pt` follows) stay those of the first format-2 checkpoints.
        for modality in ENCODERS:
            setattr(self, modality, encoders.get(modality))
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
        self.context = (
            DialogueContext(
                config.fusion_dim,
                config.context_past,
                config.context_future,
                speakers=config.context_speakers,
                layers=config.context_layers,
            )
            if config.uses_context
            else None
        )
        self.emotion_head = nn.Linear(config.fusion_dim, len(config.emotions))
        self.sentiment_head = nn.Linear(config.fusion_dim, len(config.sentiments))

    @property
    def encoders(self) -> dict[str, nn.Module]:
        """The encoder of each of the model's modalities, in the config's order."""
        return {modality: getattr(self, modality) for modality in self.config.modalities}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.classify(self.represent(batch), batch)

    def represent(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each utterance on its own: the fused vector of its modalities (stand-ins for the missing) `[B, F]`."""
        size = batch_size(batch)
        present = {m: self._present(batch, m, size) for m in self.config.modalities}
        if self.training and self.config.modality_dropout > 0 and len(present) > 1:
            present = self._hide(present)
        parts = []
        for modality, rows in present.items():
            stand_in = self.stand_ins[modality].expand(size, -1)  # [B, P]
            if rows.any():
                # Absent rows are encoded too (from blanks) and then replaced: one shape per batch.
                encoded = getattr(self, modality).encode(batch)  # [B, P]
                parts.append(torch.where(rows[:, None], encoded, stand_in))
            else:
                parts.append(stand_in)
        return self.fusion(torch.cat(parts, dim=1))  # [B, fusion_dim]

    def classify(
        self, fused: torch.Tensor, batch: dict[str, torch.Tensor], *, future: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits from fused vectors `[B, F]`, each utterance in its dialogue when `batch` places it there.

        Args:
            fused: `represent`'s output.
            batch: Carries `dialogue`/`position`/`speaker` for context; without them every row is alone.
            future: See at most this many later utterances (`--causal` is 0); None: the trained window.
        """
        if self.context is not None:
            fused = self.context(fused, batch, future=future)
        return {"emotion": self.emotion_head(fused), "sentiment": self.sentiment_head(fused)}

    def _present(self, batch: dict[str, torch.Tensor], modality: str, size: int) -> torch.Tensor:
        """Rows that have `modality` `[B]` (bool): the batch's mask, all rows, or none without inputs."""
        has_inputs = any(key in batch for key in getattr(self, modality).inputs)
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


def batch_size(batch: dict[str, torch.Tensor]) -> int:
    """Rows of a model batch, from whichever input or presence mask it carries."""
    for spec in ENCODERS.values():
        for key in spec.encoder.inputs:
            if key in batch:
                return int(batch[key].shape[0])
    for key, value in batch.items():
        if key.endswith("_present"):
            return int(value.shape[0])
    raise ValueError("the batch holds no model input")


def _build_text(config: ModelConfig, pretrained: bool) -> tuple[nn.Module, ModelConfig]:
    if pretrained or config.text_config is None:
        encoder = load_pretrained_text(config.text_model)
    else:
        encoder = build_text_from_config(config.text_config)
    # The encoder's own config goes into the model config, so that a checkpoint rebuilds it offline.
    config = config.model_copy(update={"text_config": encoder.config.to_diff_dict()})
    text = TextEncoder(encoder, config.projection_dim, frozen=config.freeze_text, layer_mix=config.text_layer_mix)
    return text, config


def _build_video(config: ModelConfig, pretrained: bool) -> tuple[nn.Module, ModelConfig]:
    backbone = build_r3d18(config.video_weights, pretrained=pretrained)
    return VideoEncoder(backbone, config.projection_dim, frozen=config.freeze_video), config


def _build_audio(config: ModelConfig, pretrained: bool) -> tuple[nn.Module, ModelConfig]:
    return AudioEncoder(config.projection_dim, config.n_mels), config


@dataclass(frozen=True)
class EncoderSpec:
    """What the model needs to know about one modality.

    Attributes:
        encoder: The encoder class: its `inputs` (the batch keys that carry the modality, raw or cached),
            `encode(batch)` -> `[B, projection_dim]`, and `train(mode)` keeping frozen parts in eval mode.
        build: `(config, pretrained)` -> the encoder and the config, updated with what a checkpoint needs to
            rebuild it offline.
        tokenized: Whether the modality's inputs come from a tokenizer (a checkpoint then stores one).
    """

    encoder: type[nn.Module]
    build: Callable[[ModelConfig, bool], tuple[nn.Module, ModelConfig]]
    tokenized: bool = False


ENCODERS: dict[str, EncoderSpec] = {
    "text": EncoderSpec(TextEncoder, _build_text, tokenized=True),
    "video": EncoderSpec(VideoEncoder, _build_video),
    "audio": EncoderSpec(AudioEncoder, _build_audio),
}
"""The encoder of each modality, in the order `MeldModel` registers them (that of its weights)."""


def uses_tokenizer(config: ModelConfig) -> bool:
    """Whether a model of `config` reads tokenized text (its checkpoint must then carry the tokenizer)."""
    return any(ENCODERS[modality].tokenized for modality in config.modalities)


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
    encoders = {}
    for modality in config.modalities:
        encoders[modality], config = ENCODERS[modality].build(config, pretrained)
    # Eval mode until a trainer says otherwise: frozen encoders that compute cached features must never run
    # with batch statistics (their BatchNorm would move, and the cache key with it).
    return MeldModel(config, encoders).eval()
