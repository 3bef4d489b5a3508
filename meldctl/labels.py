"""MELD's label sets, in the dataset's official order.

Checkpoints store these lists, so a model trained with one order is always read back with it.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
SENTIMENTS: tuple[str, ...] = ("neutral", "positive", "negative")
MODALITIES: tuple[str, ...] = ("text", "audio", "video")

EMOTION_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
SENTIMENT_INDEX: dict[str, int] = {name: i for i, name in enumerate(SENTIMENTS)}


def parse_modalities(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Turn `"text,audio"` (or a list) into a canonical, ordered tuple of modalities.

    Raises:
        ValueError: on an empty selection or an unknown name.
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen = {name.strip().lower() for name in names if name.strip()}
    unknown = chosen - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modality {sorted(unknown)[0]!r}; choose from {', '.join(MODALITIES)}")
    if not chosen:
        raise ValueError(f"choose at least one modality from {', '.join(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in chosen)
