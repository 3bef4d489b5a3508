"""What a model is and how its inputs are made: the single definition of both, stored in every checkpoint.

`PreprocessConfig` (clip and text -> tensors) and `ModelConfig` (the architecture) are frozen pydantic models.
Each field is defined once, here, with its bounds and description: the `[model]` settings section is built
from the fields marked as settings (`meldctl.settings.ModelSettings`), and a checkpoint's stored values are
validated against the same bounds before anything is allocated (a tampered `num_frames=100000` is refused,
not attempted). Only pydantic and the label lists are imported, so the CLI can read the settings without torch.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from meldctl.labels import EMOTIONS, MODALITIES, SENTIMENTS, parse_modalities

# The geometry and normalisation that torchvision's R3D_18_Weights.KINETICS400_V1.transforms() declares
# (tests/model/test_config.py checks them against the installed torchvision).
KINETICS_RESIZE: tuple[int, int] = (128, 171)
KINETICS_CROP = 112
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

SETTING = {"setting": True}
"""Marks a field that is also a `[model]` setting (flag, environment variable, TOML key)."""


def setting(default: Any, description: str, **bounds: Any) -> Any:
    """A config field that users set through `meldctl.settings` (same name, bounds and description)."""
    return Field(default, description=description, json_schema_extra=SETTING, **bounds)


def setting_fields(model: type[BaseModel]) -> list[str]:
    """The names of `model`'s fields that are settings, in declaration order."""
    return [name for name, info in model.model_fields.items() if info.json_schema_extra == SETTING]


def split_commas(value: Any) -> Any:
    """`"text,audio"` (an environment variable) -> `["text", "audio"]`; other values pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _sane_resize(value: tuple[int, int]) -> tuple[int, int]:
    if not all(8 <= side <= 1024 for side in value):
        raise ValueError("each side of resize_size must be between 8 and 1024 pixels")
    return value


# Validators live in the types, so that the settings built from these fields validate the same way.
Modalities = Annotated[tuple[str, ...], BeforeValidator(lambda v: parse_modalities(split_commas(v)))]
FrameSize = Annotated[tuple[int, int], BeforeValidator(split_commas), AfterValidator(_sane_resize)]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists): what a checkpoint and JSON hold."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Validate stored values (a checkpoint's) against the fields' bounds.

        Raises:
            pydantic.ValidationError: a value out of bounds, of the wrong type, or an unknown field.
        """
        return cls.model_validate(data)


class PreprocessConfig(_Config):
    """Everything that turns a clip and a text into model inputs.

    Train, eval and predict read it from the checkpoint, so a model always sees inputs prepared the way it
    was trained on.
    """

    num_frames: int = setting(16, "Video frames sampled uniformly across each clip.", ge=1, le=64)
    resize_size: FrameSize = setting(
        KINETICS_RESIZE, "Frames are resized to this height, width (R3D-18's Kinetics preset: 128, 171)."
    )
    crop_size: int = setting(KINETICS_CROP, "Then centre-cropped to crop_size x crop_size.", ge=8, le=512)
    mean: tuple[float, float, float] = Field(KINETICS_MEAN, description="Per-channel mean on the 0-1 scale.")
    std: tuple[float, float, float] = Field(KINETICS_STD, description="Per-channel standard deviation.")
    sample_rate: int = setting(16000, "Audio sample rate in Hz.", ge=8000, le=48000)
    n_mels: int = setting(64, "Mel bands of the log-Mel spectrogram.", ge=8, le=256)
    n_fft: int = Field(400, ge=32, le=8192, description="FFT size: 25 ms windows at 16 kHz.")
    hop_length: int = Field(160, ge=8, le=8192, description="Hop between spectrogram frames: 10 ms at 16 kHz.")
    audio_seconds: float = setting(8.0, "Audio beyond this many seconds of a clip is not used.", gt=0, le=60)
    max_tokens: int = setting(128, "Text is truncated to this many tokens.", ge=1, le=512)

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, value: tuple[float, float, float], info: Any) -> tuple[float, float, float]:
        if not all(math.isfinite(v) for v in value):
            raise ValueError(f"{info.field_name} must be finite numbers")
        if info.field_name == "std" and not all(v > 0 for v in value):
            raise ValueError("std must be positive (it divides the pixels)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PreprocessConfig:
        if self.crop_size > min(self.resize_size):
            raise ValueError(f"crop_size {self.crop_size} is larger than the resized frame {self.resize_size}")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(f"n_mels {self.n_mels} exceeds the {self.n_fft // 2 + 1} frequency bins of n_fft")
        if self.hop_length > self.n_fft:
            raise ValueError("hop_length must not exceed n_fft")
        if self.audio_samples < self.n_fft:
            raise ValueError("audio_seconds is shorter than one FFT window")
        return self

    @property
    def audio_samples(self) -> int:
        """Samples of the audio window the model reads."""
        return int(self.audio_seconds * self.sample_rate)

    @property
    def audio_frames(self) -> int:
        """Spectrogram frames of a full `audio_seconds` window (the longest an utterance gets)."""
        return self.audio_samples // self.hop_length + 1


class ModelConfig(_Config):
    """The architecture. `build_model(config)` rebuilds the same network from it."""

    modalities: Modalities = setting(MODALITIES, "Any non-empty subset of text, audio, video.")
    text_model: str = setting(
        "bert-base-uncased",
        "Hugging Face encoder name or local folder; `minilm` is the offline all-MiniLM-L6-v2 package.",
        min_length=1,
        max_length=4096,
    )
    video_weights: str = setting(
        "kinetics400", "R3D-18 weights: kinetics400, none, or a local .pth file.", min_length=1, max_length=4096
    )
    freeze_text: bool = setting(True, "Keep the text encoder frozen (its features are then cached).")
    text_layer_mix: bool = setting(True, "Mix the mean-pooled outputs of all text encoder layers with learned weights.")
    freeze_video: bool = setting(True, "Keep the R3D-18 backbone frozen (its features are then cached).")
    projection_dim: int = setting(128, "Width of each modality's projection before fusion.", ge=1, le=4096)
    fusion_dim: int = setting(256, "Width of the fusion layer.", ge=2, le=8192)
    dropout: float = setting(0.3, "Dropout after fusion.", ge=0, lt=1)
    modality_dropout: float = setting(
        0.3,
        "Training only: chance of hiding each modality of an utterance (multimodal models), so that one "
        "checkpoint answers from any subset of its modalities.",
        ge=0,
        lt=1,
    )
    context_past: int = setting(
        0, "Dialogue context: earlier utterances of the same dialogue each utterance sees (0: none).", ge=0, le=64
    )
    context_future: int = setting(
        0, "Dialogue context: later utterances each one sees (offline analysis; 0: none).", ge=0, le=64
    )
    context_speakers: bool = setting(
        True, "Dialogue context: tell the model which utterances in view have the same speaker."
    )
    context_layers: int = Field(1, ge=1, le=8, description="Attention blocks of the dialogue-context layer.")
    n_mels: int = Field(64, ge=8, le=256, description="Mel bands the audio encoder takes (= the preprocessing's).")
    emotions: tuple[str, ...] = Field(EMOTIONS, description="Emotion labels in head order.")
    sentiments: tuple[str, ...] = Field(SENTIMENTS, description="Sentiment labels in head order.")
    # Filled in when the text encoder is first loaded, so that a checkpoint can rebuild it offline.
    text_config: dict[str, Any] | None = Field(None, description="The text encoder's Hugging Face config.")

    @property
    def uses_context(self) -> bool:
        """Whether the model has a dialogue-context layer (a window of at least one other utterance)."""
        return self.context_past + self.context_future > 0

    @field_validator("emotions", "sentiments")
    @classmethod
    def _labels(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        if not 2 <= len(value) <= 64 or len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} must be 2 to 64 distinct labels")
        if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
            raise ValueError(f"{info.field_name} must be non-empty names of at most 64 characters")
        return value
