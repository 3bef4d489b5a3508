"""A whole video -> utterances -> one prediction per utterance, through the same `Predictor` as `predict`.

Segmentation first (subtitles, speech recognition or voice activity), then one streaming pass over the
video (`meldctl.media.stream`) whose frames and audio go through `Predictor.prepare_media` and batched
`Predictor.run`. Decoding and preprocessing run in a background thread, one batch ahead of the model.

With a checkpoint trained with dialogue context, the video's utterances are one conversation in time order:
the stream's batched forwards stop at each utterance's fused vector (`Predictor.represent`, a few hundred
numbers, kept; the decoded media are not), and once the stream ends `Predictor.classify_conversation` sees
each utterance with its neighbours and their speakers. Memory stays flat in the video's length either way.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from meldctl.analysis.segments import Segmentation, Utterance, format_time
from meldctl.analysis.subtitles import find_subtitles, subtitle_segmentation
from meldctl.analysis.timeline import Timeline
from meldctl.errors import AnalysisError, MeldError
from meldctl.media.stream import UtteranceMedia, VideoInfo, probe_video, stream_utterances

if TYPE_CHECKING:
    from meldctl.data.kinds import FeatureKind
    from meldctl.inference import Prediction, Predictor, PreparedInput

METHODS = ("auto", "subtitles", "asr", "vad")
CONTEXTS = ("full", "causal", "none")
"""Dialogue context in `analyze`: the checkpoint's whole window (past and, when trained with it, future
utterances), past only (`--causal`), or none (`--no-context`, every utterance alone)."""

Progress = Callable[[str, float, float], None]
"""Called with (stage, done, total): "segment" in seconds of audio, "classify" in utterances."""

T = TypeVar("T")


def choose_method(requested: str, *, subtitles: Path | None, has_audio: bool, reads_text: bool, video: Path) -> str:
    """The segmentation to use: `auto` is subtitles when there are some, else ASR for a checkpoint that reads
    text, else voice activity.

    Raises:
        AnalysisError: the method needs subtitles that are not there, or audio the video lacks.
    """
    if requested not in METHODS:
        raise ValueError(f"unknown segmentation {requested!r}; expected one of {METHODS}")
    if requested == "subtitles" and subtitles is None:
        raise AnalysisError(
            f"no subtitles given and none found beside {video} (same name, .srt/.vtt/.ass)",
            hint="pass --subtitles FILE, or --segment asr to transcribe the speech",
        )
    method = requested
    if requested == "auto":
        method = "subtitles" if subtitles is not None else "asr" if reads_text else "vad"
    if method in ("asr", "vad") and not has_audio:
        if requested == "auto":
            raise AnalysisError(
                f"{video} has no audio stream and no subtitles were found beside it: nothing tells where the "
                "utterances are",
                hint="pass --subtitles FILE",
            )
        raise AnalysisError(f"{video} has no audio stream to find speech in", hint="pass --subtitles FILE")
    return method


def segment_video(
    info: VideoInfo, method: str, *, asr_model: str | None, device: str, threads: int, progress: Progress | None
) -> Segmentation:
    """Find the utterances in the audio track: speech recognition ("asr") or voice activity ("vad")."""
    from meldctl.analysis.asr import asr_segmentation
    from meldctl.analysis.vad import vad_segmentation

    start = time.perf_counter()
    step = (lambda done, total: progress("segment", done, total)) if progress is not None else None
    if method == "asr":
        result = asr_segmentation(info, asr_model, device=device, threads=threads, progress=step)
    else:
        result = vad_segmentation(info, progress=step)
    result.seconds = time.perf_counter() - start
    return result


def analyze(
    video: Path,
    predictor: Predictor | Callable[[], Predictor],
    *,
    segment: str = "auto",
    subtitles: Path | None = None,
    asr_model: str | None = None,
    batch_size: int = 8,
    context: str = "full",
    progress: Progress | None = None,
) -> Timeline:
    """Cut `video` into utterances and classify each one, as one conversation when the checkpoint has context.

    Args:
        video: Any file FFmpeg reads with a video or an audio stream.
        predictor: The loaded checkpoint, or a function that loads it: called only once the video (and the
            subtitles, when used) are known to be readable, so bad input fails before a slow model load.
        segment: "auto", "subtitles", "asr" or "vad" (see `choose_method`).
        subtitles: A subtitle file (default: one beside the video with the same name).
        asr_model: faster-whisper model name or folder for ASR (default: the bundled tiny.en).
        batch_size: Utterances per forward.
        context: "full", "causal" or "none" (see `CONTEXTS`); a checkpoint without context ignores it.
        progress: Called as the work advances.

    Raises:
        MeldError: bad input (not a video, bad subtitles, no audio and no subtitles, an unusable ASR model).
    """
    import torch

    from meldctl.inference import Predictor

    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}; expected one of {CONTEXTS}")
    started = time.perf_counter()
    info = probe_video(video)
    if subtitles is None and segment in ("auto", "subtitles"):
        subtitles = find_subtitles(Path(video))
    cues = None
    if subtitles is not None and segment in ("auto", "subtitles"):
        cues = subtitle_segmentation(subtitles, info.duration_s)
        cues.seconds = time.perf_counter() - started
    if not isinstance(predictor, Predictor):
        predictor = predictor()
    reads_text = predictor.reads_text
    method = choose_method(segment, subtitles=subtitles, has_audio=info.has_audio, reads_text=reads_text, video=video)
    device = "cuda" if predictor.device.type == "cuda" else "cpu"
    segmentation = cues or segment_video(
        info, method, asr_model=asr_model, device=device, threads=torch.get_num_threads(), progress=progress
    )
    warnings = list(segmentation.warnings) + _stream_warnings(info, predictor.kinds)
    classify_start = time.perf_counter()
    utterances = segmentation.utterances
    predictions = classify(predictor, info, utterances, batch_size=batch_size, context=context, progress=progress)
    named = any(u.speaker is not None for u in utterances)
    now = time.perf_counter()
    return Timeline(
        video=str(video),
        duration=info.duration_s,
        segmentation=segmentation,
        model=predictor.describe(),
        utterances=segmentation.utterances,
        predictions=predictions,
        warnings=warnings,
        context=predictor.context_window(context=context != "none", future=_future(context), speakers=named),
        seconds={
            "segmentation": round(segmentation.seconds, 3),
            "classification": round(now - classify_start, 3),
            "total": round(now - started, 3),
        },
    )


def _stream_warnings(info: VideoInfo, kinds: list[FeatureKind]) -> list[str]:
    return [
        f"{info.path} has no {kind.modality} stream: every utterance is classified without {kind.modality}"
        for kind in kinds
        if kind.absent_from(info)
    ]


def _future(context: str) -> int | None:
    """The later utterances each one may see: none for "causal", else the checkpoint's window."""
    return 0 if context == "causal" else None


def classify(
    predictor: Predictor,
    info: VideoInfo,
    utterances: list[Utterance],
    *,
    batch_size: int = 8,
    context: str = "full",
    progress: Progress | None = None,
) -> list[Prediction]:
    """One prediction per utterance, in order, from one streaming pass over the video.

    Without dialogue context (the checkpoint has none, or `context` is "none") each batch is classified as it
    is decoded. With it, each batch is only encoded (`Predictor.represent`): its fused vectors are kept, its
    decoded media dropped, and the whole conversation is classified once the stream ends.

    Raises:
        MeldError: the media cannot be decoded, or a span lacks every modality of the checkpoint.
    """
    from meldctl.data.kinds import KINDS

    spans = [(u.start, u.end) for u in utterances]
    # Decode each stream (keyword `video`, `audio`) only when the checkpoint reads it.
    streams = {kind.stream: kind.modality in predictor.modalities for kind in KINDS.values() if kind.media}
    media = stream_utterances(
        info,
        spans,
        predictor.preprocess,
        **streams,
        # The model reads only the first audio_seconds of an utterance (log-Mel crops there): no more is kept.
        max_audio_s=predictor.preprocess.audio_seconds,
    )
    prepared = (_prepare(predictor, utterances[item.index], item) for item in media)
    conversation = _Conversation(predictor) if context != "none" and predictor.uses_context else None
    # Each batch's answers as it is decoded; with context, its encoded utterances, answered after the stream.
    step = predictor.run if conversation is None else conversation.add
    done: list = []
    batch: list[PreparedInput] = []
    if progress is not None:
        progress("classify", 0, len(utterances))
    for item in _background(prepared, depth=2 * batch_size):
        batch.append(item)
        if len(batch) == batch_size:
            done += step(batch)
            batch = []
            if progress is not None:
                progress("classify", len(done), len(utterances))
    done += step(batch)
    if conversation is not None:
        speakers = [u.speaker for u in utterances]
        done = conversation.classify(speakers, future=_future(context), chunk=max(batch_size, 256))
    if progress is not None:
        progress("classify", len(done), len(utterances))
    return done


class _Conversation:
    """The fused vectors of a video's utterances, gathered batch by batch, then classified in their context."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.inputs: list[PreparedInput] = []
        self.fused: list = []  # [B, F] tensors, one per batch

    def add(self, batch: list[PreparedInput]) -> list[PreparedInput]:
        """Encode `batch` and keep what classifying needs: its vectors, names, texts, warnings and times."""
        if not batch:
            return []
        start = time.perf_counter()
        self.fused.append(self.predictor.represent(batch))
        share = (time.perf_counter() - start) / len(batch)
        light = [replace(p, sample={}, seconds=p.seconds + share) for p in batch]
        self.inputs += light
        return light

    def classify(self, speakers: list[str | None], *, future: int | None, chunk: int) -> list[Prediction]:
        import torch

        if not self.inputs:
            return []
        fused = torch.cat(self.fused)  # [N, F]
        return self.predictor.classify_conversation(self.inputs, fused, speakers, future=future, chunk=chunk)


def _prepare(predictor: Predictor, utterance: Utterance, media: UtteranceMedia) -> PreparedInput:
    """`Predictor.prepare_media` for one utterance; a span that lacks every modality is refused with its place.

    A span that lacks some modalities is answered without them (the Predictor lists them in `missing`).
    """
    where = f"{format_time(utterance.start, decimals=1)}-{format_time(utterance.end, decimals=1)}"
    try:
        return predictor.prepare_media(utterance.text, frames=media.frames, waveform=media.waveform, name=where)
    except MeldError as exc:
        hint = "use --segment asr or --subtitles FILE: this checkpoint reads text" if utterance.text is None else None
        raise AnalysisError(f"utterance at {where}: {exc.message}", hint=hint or exc.hint) from None


def _background(items: Iterator[T], *, depth: int) -> Iterator[T]:
    """Iterate `items` in a background thread, up to `depth` ahead; its exceptions are raised here."""
    done = object()
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            box.put((done, exc))
        finally:
            if stop.is_set() and hasattr(items, "close"):
                items.close()

    thread = threading.Thread(target=produce, name="meldctl-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, error = box.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let the producer see `stop` even when the queue is full
            try:
                box.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
