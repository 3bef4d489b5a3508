"""Plain dataclasses that describe a model and its inputs; both are stored in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from meldctl.labels import EMOTIONS, MODALITIES, SENTIMENTS

# The normalisation that torchvision's R3D_18_Weights.KINETICS400_V1 declares (its transforms()).
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that turns a clip and a text into model inputs.

    Train, eval and predict read it from the checkpoint, so a model always sees inputs prepared the way
    it was trained on.
    """

    num_frames: int = 16
    frame_size: int = 112
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 400  # 25 ms windows at 16 kHz
    hop_length: int = 160  # 10 ms hops
    audio_seconds: float = 8.0
    max_tokens: int = 128

    @property
    def audio_frames(self) -> int:
        """Spectrogram frames of a clip after cropping or padding to `audio_seconds`."""
        return int(self.audio_seconds * self.sample_rate) // self.hop_length + 1

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return cls(**_known(cls, data, tuples=("mean", "std")))


@dataclass(frozen=True)
class ModelConfig:
    """The architecture. `build_model(config)` rebuilds the same network from it."""

    modalities: tuple[str, ...] = MODALITIES
    text_model: str = "bert-base-uncased"
    video_weights: str = "kinetics400"
    freeze_text: bool = True
    text_layer_mix: bool = True
    freeze_video: bool = True
    projection_dim: int = 128
    fusion_dim: int = 256
    dropout: float = 0.3
    n_mels: int = 64
    emotions: tuple[str, ...] = EMOTIONS
    sentiments: tuple[str, ...] = SENTIMENTS
    # Filled in when the text encoder is first loaded, so that a checkpoint can rebuild it offline.
    text_config: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.modalities or set(self.modalities) - set(MODALITIES):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**_known(cls, data, tuples=("modalities", "emotions", "sentiments")))


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: checkpoints and JSON hold only plain containers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _known(cls: type, data: dict[str, Any], tuples: tuple[str, ...]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    kept = {k: v for k, v in data.items() if k in names}
    for key in tuples:
        if key in kept:
            kept[key] = tuple(kept[key])
    return kept
