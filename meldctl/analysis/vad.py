"""Voice activity alone (silero-vad) as utterances without text, for checkpoints that do not read text.

silero-vad's weights ship inside its wheel, so this works offline with `pip install 'meldctl[asr]'`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from meldctl.analysis.segments import Segmentation, Utterance, clamp
from meldctl.analysis.windows import SAMPLE_RATE, detect_windowed
from meldctl.errors import AnalysisError
from meldctl.media.stream import VideoInfo

# A pause this long ends an utterance: shorter ones are breaths and commas within a sentence.
MIN_SILENCE_MS = 500
MAX_SPEECH_S = 15.0  # longer speech is cut at its longest pause (silero's own rule), as ASR sentences are


def load_vad_model() -> Any:
    """silero-vad's ONNX model (on onnxruntime, which faster-whisper brings), from the weights inside its wheel.

    The ONNX model, not the TorchScript one: it calls the network once per 32 ms of audio, and onnxruntime
    answers those small calls about 30 times faster here than TorchScript does.

    Raises:
        AnalysisError: silero-vad is not installed.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError:
        raise AnalysisError(
            "voice-activity detection needs silero-vad, which is not installed",
            hint="pip install 'meldctl[asr]', or give subtitles with --subtitles FILE",
        ) from None
    finally:
        # Importing silero_vad sets torch to one thread for the whole process; the classifier wants them all.
        torch.set_num_threads(threads)
    return silero_vad.load_silero_vad(onnx=True)


def speech_spans(model: Any, samples: np.ndarray, offset: float) -> list[Utterance]:
    """Spans of speech in one window of audio (float32 mono `[n]` at 16 kHz starting at `offset` seconds)."""
    import torch
    from silero_vad import get_speech_timestamps

    spans = get_speech_timestamps(
        torch.from_numpy(samples),
        model,
        sampling_rate=SAMPLE_RATE,
        min_silence_duration_ms=MIN_SILENCE_MS,
        max_speech_duration_s=MAX_SPEECH_S,
        return_seconds=True,
    )
    return [Utterance(offset + span["start"], offset + span["end"]) for span in spans]


def vad_segmentation(info: VideoInfo, *, progress: Callable[[float, float], None] | None = None) -> Segmentation:
    """Utterances (no text) where silero-vad hears speech in the whole audio track.

    Raises:
        AnalysisError: silero-vad is missing, or it finds no speech.
    """
    start = time.perf_counter()
    model = load_vad_model()
    found = clamp(
        detect_windowed(info, lambda s, offset: speech_spans(model, s, offset), progress=progress), info.duration_s
    )
    if not found:
        raise AnalysisError(f"no speech was found in {info.path}", hint="give subtitles with --subtitles FILE")
    return Segmentation("vad", "silero-vad", found, seconds=time.perf_counter() - start)
