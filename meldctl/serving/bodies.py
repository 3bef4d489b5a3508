"""The answers' shapes, as /openapi.json publishes them (the routes build plain dicts of these fields)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, WithJsonSchema


class ErrorBody(BaseModel):
    """What every refused request gets."""

    error: str


_PAIR = {
    "type": "array",
    "items": {"anyOf": [{"type": "string"}, {"type": "number"}]},
    "minItems": 2,
    "maxItems": 2,
    "description": "[emotion, probability]",
}  # a pair without a tuple schema: FastAPI writes a tuple in the OpenAPI 3.0 way, which 3.1 validators refuse


class PredictionBody(BaseModel):
    """One prediction, as `meldctl predict --json` prints it."""

    clip: str | None
    text: str | None
    emotion: dict[str, float]
    sentiment: dict[str, float]
    top_emotion: str
    top_sentiment: str
    top_emotions: list[Annotated[tuple[str, float], WithJsonSchema(_PAIR)]]
    missing: list[str] | None = None
    warnings: list[str] | None = None


class DialogueAnswerBody(PredictionBody):
    """A dialogue row's prediction: one clip's answer, plus the row's conversation and speaker."""

    dialogue: str | None
    speaker: str | None


class DialogueRowErrorBody(BaseModel):
    """A dialogue row whose clip could not be used (the other rows are answered)."""

    clip: str | None
    text: str
    dialogue: str | None
    speaker: str | None
    error: str


PredictAnswer = PredictionBody | list[DialogueAnswerBody | DialogueRowErrorBody]


class TimelineBody(BaseModel):
    """A whole video's timeline, as `meldctl analyze --json` prints it (docs/analyze.md describes each field)."""

    video: str
    duration: float
    segmentation: dict[str, Any]
    checkpoint: str
    modalities: list[str]
    labels: dict[str, list[str]]
    summary: list[dict[str, Any]]
    utterances: list[dict[str, Any]]
    warnings: list[str]
    seconds: dict[str, float]
    meldctl_version: str
