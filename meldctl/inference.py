"""Predict emotion and sentiment for clips and texts with a loaded checkpoint, through the training preprocessing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from meldctl.errors import MeldError, NoStreamError
from meldctl.model.checkpoint import LoadedCheckpoint, load_checkpoint
from meldctl.model.context import window_ahead
from meldctl.training import distributed

if TYPE_CHECKING:
    from meldctl.data.dialogue import DialogueLine
    from meldctl.data.kinds import FeatureKind


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


@dataclass(frozen=True)
class Turn:
    """One line of a conversation: what was said and, where known, who said it."""

    text: str
    speaker: str | None = None

    @classmethod
    def parse(cls, value: str) -> Turn:
        """`"Rachel: Oh my God!"` -> speaker Rachel; a line without such a prefix has no speaker.

        The text before the first colon counts as the speaker when it could be a name: at most 40 characters
        and 4 words, with no sentence punctuation.
        """
        head, sep, tail = value.partition(":")
        name = head.strip()
        if sep and tail.strip() and 0 < len(name) <= 40 and len(name.split()) <= 4 and not set(name) & set('.?!,;"'):
            return cls(tail.strip(), name)
        return cls(value.strip())


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

    Inputs go through the same functions as training: `read_video` / `FrameConverter`, the FFmpeg audio
    command of `prepare`, `log_mel_features`, the checkpoint's tokenizer through `tokenize`, and the
    `FeatureKind` collation, with the preprocessing parameters stored in the checkpoint. `prepare` (decoding;
    safe to call from several threads at once) and `run` (one batched forward; one caller at a time) are
    separate, so that a server can decode requests in parallel and batch the forward.

    A clip that lacks a stream the checkpoint uses (a silent video, an audio file) is answered from what it
    has, with a warning and the modality in `missing`; `strict=True` refuses it instead.
    """

    def __init__(self, loaded: LoadedCheckpoint, device: torch.device) -> None:
        from meldctl.data.dataset import Collator
        from meldctl.data.kinds import kinds_for

        self.loaded, self.device = loaded, device
        self.checkpoint = loaded.path
        self.model = loaded.model.eval()
        self.modalities = loaded.model.config.modalities
        self.kinds = kinds_for(self.modalities)
        self.preprocess = loaded.preprocess
        self._collate = Collator(self.kinds, self.preprocess, loaded.tokenizer)

    @classmethod
    def from_path(cls, checkpoint: Path, device: str = "auto") -> Predictor:
        torch_device = distributed.resolve_device(device)
        return cls(load_checkpoint(checkpoint, torch_device), torch_device)

    @property
    def needs_clip(self) -> bool:
        """Whether the checkpoint reads a modality that only a clip has (video, audio)."""
        return any(kind.media for kind in self.kinds)

    @property
    def reads_text(self) -> bool:
        """Whether the checkpoint reads the utterance text."""
        return not all(kind.media for kind in self.kinds)

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
            MeldError: a missing or unreadable clip, no clip for a checkpoint that needs one, empty text for a
                text checkpoint, or (with `strict`) a clip without a stream the checkpoint uses.
        """
        start = time.perf_counter()
        shown = name if name is not None else _name(clip)
        if self.needs_clip and clip is None:
            raise MeldError(f"this checkpoint uses {','.join(self.modalities)}: give a clip to predict on")
        sample, missing = {}, []
        for kind in sorted(self.kinds, key=lambda kind: kind.read_order):
            try:
                sample.update(kind.from_clip(clip, text, self.preprocess))
            except NoStreamError as exc:
                # Say it with the clip's name as the caller knows it (a server's temporary path is nobody's).
                why = exc.message.replace(str(clip), shown) if clip is not None else exc.message
                if strict:
                    raise MeldError(f"{why} (--strict: every modality of the checkpoint is required)") from None
                missing.append((kind, why))
        prepared = self._prepared(text, sample, missing, shown)
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
            text: The utterance text (None or empty: missing).
            frames: `num_frames` RGB frames as `FrameConverter(preprocess)` returns them, or None.
            waveform: float32 mono `[samples]` at `preprocess.sample_rate`, the utterance's span, or None.
            name: What the answer calls this utterance.
        """
        from meldctl.data.kinds import DecodedMedia

        start = time.perf_counter()
        media, sample, missing = DecodedMedia(text, frames, waveform), {}, []
        for kind in sorted(self.kinds, key=lambda kind: kind.read_order):
            try:
                sample.update(kind.from_media(media, self.preprocess))
            except NoStreamError as exc:
                missing.append((kind, exc.message))
        if any(not kind.media for kind, _ in missing):
            text = None  # unusable (empty), so reported as none
        prepared = self._prepared(text, sample, missing, name)
        prepared.seconds = time.perf_counter() - start
        return prepared

    def _prepared(
        self, text: str | None, sample: dict[str, Any], missing: list[tuple[FeatureKind, str]], name: str | None
    ) -> PreparedInput:
        warnings = [f"answered without {kind.modality}: {why}" for kind, why in missing]
        absent = {kind.modality for kind, _ in missing}
        if absent >= set(self.modalities):
            raise MeldError(f"nothing to predict from: {'; '.join(why for _, why in missing)}")
        for kind in self.kinds:
            if kind.modality not in absent:
                warnings += kind.warnings(sample, self._collate.ctx)
            sample[f"{kind.modality}_present"] = kind.modality not in absent
        return PreparedInput(
            name=name, text=text, sample=sample, missing=[m for m in self.modalities if m in absent], warnings=warnings
        )

    @torch.no_grad()
    def run(self, inputs: list[PreparedInput]) -> list[Prediction]:
        """One batched forward over prepared inputs, each utterance alone; answers in the same order.

        Raises:
            MeldError: the model produced NaN or infinite values (a damaged checkpoint).
        """
        if not inputs:
            return []
        start = time.perf_counter()
        logits = self.model.classify(self.represent(inputs), {})
        return self._answers(inputs, logits, time.perf_counter() - start)

    @torch.no_grad()
    def represent(self, inputs: list[PreparedInput]) -> torch.Tensor:
        """Each utterance's fused vector `[B, F]` (on the model's device), before any dialogue context."""
        from meldctl.training.loop import to_device

        return self.model.represent(to_device(self._collate([p.sample for p in inputs]), self.device))

    @property
    def uses_context(self) -> bool:
        """Whether the checkpoint was trained to see each utterance in its dialogue."""
        return self.model.config.uses_context

    def prepare_turn(self, turn: Turn) -> PreparedInput:
        """A context-only utterance (what was said around the one asked about): its text, nothing else.

        Raises:
            MeldError: the checkpoint does not read text, so a line of dialogue tells it nothing.
        """
        if not self.reads_text:
            raise MeldError("this checkpoint does not read text: context lines cannot be used", hint="drop --context")
        prepared = self.prepare_media(turn.text, frames=None, waveform=None, name=None)
        prepared.warnings = []  # nobody asked about this line: its missing clip is expected
        return prepared

    @torch.no_grad()
    def run_dialogue(
        self,
        inputs: list[PreparedInput],
        speakers: Sequence[str | None],
        *,
        context: bool = True,
        future: int | None = None,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """Predictions for the utterances of one conversation, in order, each seeing its trained window.

        Memory stays flat in the conversation's length: utterances are encoded `batch_size` at a time into
        their fused vectors (a few hundred numbers each), then classified in windows of neighbours.

        Args:
            inputs: The dialogue's utterances in the order they were said.
            speakers: Who said each (None where unknown); only equality between names matters.
            context: False scores every utterance alone (the `--no-context` ablation).
            future: See at most this many later utterances (0 for `--causal`); None: the trained window.
            batch_size: Utterances encoded per forward.
        """
        if not inputs:
            return []
        start = time.perf_counter()
        fused = torch.cat([self.represent(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
        share = (time.perf_counter() - start) / len(inputs)
        timed = [replace(p, seconds=p.seconds + share) for p in inputs]
        return self.classify_conversation(timed, fused, speakers, context=context, future=future, chunk=batch_size)

    @torch.no_grad()
    def classify_conversation(
        self,
        inputs: Sequence[PreparedInput],
        fused: torch.Tensor,
        speakers: Sequence[str | None],
        *,
        context: bool = True,
        future: int | None = None,
        chunk: int = 256,
    ) -> list[Prediction]:
        """Predictions for a whole conversation from its fused vectors (`represent`'s, concatenated in order).

        The context layer runs `chunk` utterances at a time, each chunk with the neighbours its window reaches,
        so memory stays flat in the conversation's length and every utterance sees exactly its window.

        Args:
            inputs: The utterances in the order they were said; only their names, texts, warnings and times are
                read, so a caller may drop their `sample` once it has the fused vectors.
            fused: `[N, F]`, row i for `inputs[i]`.
            speakers: Who said each (None where unknown); only equality between names matters.
            context: False scores every utterance alone (the `--no-context` ablation).
            future: See at most this many later utterances (0 for `--causal`); None: the trained window.
            chunk: Utterances per forward of the context layer.

        Raises:
            MeldError: the model produced NaN or infinite values (a damaged checkpoint).
        """
        if not inputs:
            return []
        start = time.perf_counter()
        fused = fused.to(self.device)
        if not (context and self.uses_context):
            logits = self.model.classify(fused, {})
        else:
            logits = self._in_context(fused, speakers, future, max(1, chunk))
        return self._answers(list(inputs), logits, time.perf_counter() - start)

    def context_window(
        self, *, context: bool = True, future: int | None = None, speakers: bool = True
    ) -> dict[str, Any]:
        """The dialogue context a classification uses: how many utterances before and after each one it sees,
        whether speakers enter, whether any context is used; zeros and False when none is.

        Args:
            context: As in `classify_conversation`.
            future: As in `classify_conversation`.
            speakers: Whether the utterances name their speakers at all.
        """
        config = self.model.config
        used = context and self.uses_context
        ahead = window_ahead(config.context_future, future)
        return {
            "past": config.context_past if used else 0,
            "future": ahead if used else 0,
            "speakers": used and speakers and config.context_speakers,
            "used": used,
        }

    def _in_context(
        self, fused: torch.Tensor, speakers: Sequence[str | None], future: int | None, chunk: int
    ) -> dict[str, torch.Tensor]:
        """Context and heads over a whole conversation `[N, F]`, a chunk of rows at a time with their window."""
        from meldctl.data.dialogue import speaker_ids

        config, size = self.model.config, len(fused)
        ahead = window_ahead(config.context_future, future)
        ids = torch.tensor(speaker_ids(speakers), device=fused.device)
        outputs: dict[str, list[torch.Tensor]] = {}
        for first in range(0, size, chunk):
            low, high = max(0, first - config.context_past), min(size, first + chunk + ahead)
            keys = {
                "dialogue": torch.zeros(high - low, dtype=torch.long, device=fused.device),
                "position": torch.arange(low, high, device=fused.device),
                "speaker": ids[low:high],
            }
            logits = self.model.classify(fused[low:high], keys, future=future)
            for head, values in logits.items():
                outputs.setdefault(head, []).append(values[first - low : min(first + chunk, size) - low])
        return {head: torch.cat(parts) for head, parts in outputs.items()}

    def _answers(
        self, inputs: list[PreparedInput], logits: dict[str, torch.Tensor], seconds: float
    ) -> list[Prediction]:
        probs = {head: values.float().softmax(1).cpu() for head, values in logits.items()}
        if not all(torch.isfinite(p).all() for p in probs.values()):
            raise MeldError(f"the model in {self.checkpoint} produced NaN or infinite scores", hint="retrain it")
        config, share = self.model.config, seconds / len(inputs)
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


def newest_checkpoint(runs_root: Path) -> Path | None:
    """The most recently written `runs/*/best.pt`, for predict without --ckpt."""
    found = sorted(Path(runs_root).glob("*/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def predict_lines(
    predictor: Predictor, lines: Sequence[DialogueLine], *, context: bool = True, strict: bool = False
) -> list[Prediction | MeldError]:
    """One answer per line of a dialogue file, in the lines' order: a prediction, or why there is none.

    Lines are grouped into their dialogues and each dialogue is classified as a conversation (with the
    checkpoint's context window unless `context` is False). A line without a clip is answered from its text; a
    line whose clip cannot be used is answered with its error and left out of its dialogue's context.
    """
    from meldctl.data.dialogue import group_lines

    answers: list[Prediction | MeldError | None] = [None] * len(lines)
    for group in group_lines(lines):
        prepared, kept = [], []
        for index in group:
            line = lines[index]
            try:
                if line.clip is None:
                    prepared.append(predictor.prepare_media(line.text, frames=None, waveform=None))
                elif not line.clip.is_file():  # even a text model would silently answer without it
                    raise MeldError(f"clip {line.clip} does not exist")
                else:
                    prepared.append(predictor.prepare(line.clip, line.text, strict=strict, name=str(line.clip)))
                kept.append(index)
            except MeldError as exc:
                answers[index] = exc
        speakers = [lines[i].speaker for i in kept]
        for index, answer in zip(kept, predictor.run_dialogue(prepared, speakers, context=context), strict=True):
            answers[index] = answer
    return answers  # type: ignore[return-value]
