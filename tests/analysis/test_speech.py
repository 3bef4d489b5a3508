"""Speech recognition and voice activity on a real episode: espeak-ng sentences, the bundled faster-whisper
tiny.en model, silero-vad's own weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meldctl.analysis.asr import asr_segmentation, default_model, load_asr_model
from meldctl.analysis.segments import Segmentation
from meldctl.analysis.vad import speech_spans, vad_segmentation
from meldctl.analysis.windows import detect_windowed
from meldctl.errors import AnalysisError
from meldctl.media.stream import probe_video


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@pytest.fixture(scope="session")
def asr(episode) -> Segmentation:  # noqa: ANN001
    return asr_segmentation(probe_video(episode.video), None, threads=2)


def test_default_model_is_the_bundled_tiny_en() -> None:
    folder = Path(default_model())
    assert (folder / "model.bin").is_file() and (folder / "tokenizer.json").is_file()


def test_asr_finds_every_sentence_in_time_with_most_of_its_words(asr: Segmentation, episode) -> None:  # noqa: ANN001
    assert asr.method == "asr" and asr.source == default_model()
    assert len(asr.utterances) == len(episode.cues)
    for cue, found in zip(episode.cues, asr.utterances, strict=True):
        assert found.start == pytest.approx(cue.start, abs=0.5), (cue, found)
        assert found.end == pytest.approx(cue.end, abs=0.5), (cue, found)
        expected = _words(cue.text)
        assert len(expected & _words(found.text)) >= 0.7 * len(expected), (cue.text, found.text)


def test_windowed_asr_matches_one_pass(asr: Segmentation, episode) -> None:  # noqa: ANN001
    """Windows much shorter than the episode (each cut mid-sentence) find the same utterances."""
    from meldctl.analysis.asr import asr_utterances, transcribe

    model, _ = load_asr_model(None, threads=2)
    small = detect_windowed(
        probe_video(episode.video),
        lambda samples, offset: asr_utterances(*transcribe(model, samples, offset)),
        window_s=14.0,
        tail_s=4.0,
    )
    assert len(small) == len(asr.utterances)
    for a, b in zip(small, asr.utterances, strict=True):
        assert a.start == pytest.approx(b.start, abs=0.5) and a.end == pytest.approx(b.end, abs=0.5)


def test_vad_finds_the_speech_spans(episode) -> None:  # noqa: ANN001
    seg = vad_segmentation(probe_video(episode.video))
    assert seg.method == "vad" and all(u.text is None for u in seg.utterances)
    assert len(seg.utterances) == len(episode.cues)
    for cue, found in zip(episode.cues, seg.utterances, strict=True):
        assert found.start == pytest.approx(cue.start, abs=0.3) and found.end == pytest.approx(cue.end, abs=0.3)


def test_vad_in_short_windows_matches_one_pass(episode) -> None:  # noqa: ANN001
    from meldctl.analysis.vad import load_vad_model

    model = load_vad_model()
    info = probe_video(episode.video)
    one = detect_windowed(info, lambda s, offset: speech_spans(model, s, offset), window_s=600.0)
    small = detect_windowed(info, lambda s, offset: speech_spans(model, s, offset), window_s=7.0, tail_s=2.5)
    assert len(small) == len(one) == len(episode.cues)
    for a, b in zip(small, one, strict=True):
        assert a.start == pytest.approx(b.start, abs=0.15) and a.end == pytest.approx(b.end, abs=0.15)


def test_loading_silero_keeps_torch_threads() -> None:
    import torch

    from meldctl.analysis.vad import load_vad_model

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        load_vad_model()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_unreadable_asr_model_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(AnalysisError, match="cannot load the speech-recognition model") as caught:
        load_asr_model(str(tmp_path))
    assert "--asr-model PATH" in caught.value.hint
    with pytest.raises(AnalysisError, match="not a faster-whisper model folder"):
        load_asr_model(str(tmp_path / "missing"))


def test_an_asr_model_name_offline_names_the_path_option() -> None:
    with pytest.raises(AnalysisError, match="cannot download the speech-recognition model small.en") as caught:
        load_asr_model("small.en")
    assert "--asr-model PATH" in caught.value.hint


def test_silence_is_no_speech(tmp_path: Path) -> None:
    from episode import write_episode

    silence = probe_video(write_episode(tmp_path / "quiet.mp4", []).video)  # one second, no sentence
    with pytest.raises(AnalysisError, match="no speech was found"):
        vad_segmentation(silence)
    with pytest.raises(AnalysisError, match="no speech was recognised"):
        asr_segmentation(silence, None, threads=2)
