"""The FeatureKinds: what each modality gives predict, the cache and analyze, checked per kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from meldctl.data.kinds import KINDS, CollateContext, DecodedMedia
from meldctl.data.manifest import ManifestRow
from meldctl.errors import MeldError, NoStreamError
from meldctl.labels import MODALITIES
from meldctl.media.stream import VideoInfo
from meldctl.model.config import PreprocessConfig

PRE = PreprocessConfig(num_frames=4, resize_size=(16, 20), crop_size=16)


def _row(**fields: object) -> ManifestRow:
    base = {"split": "dev", "dialogue_id": 1, "utterance_id": 2, "speaker": "Ross", "text": "Hi.",
            "emotion": "joy", "sentiment": "positive", "clip": "clips/dev/d1u2.mp4",
            "audio": "audio/dev/d1u2.wav", "duration_s": 1.0, "status": "ok"}  # fmt: skip
    return ManifestRow(**{**base, **fields})


def test_every_modality_has_a_kind_and_only_text_is_not_media() -> None:
    assert list(KINDS) == list(MODALITIES)
    assert [m for m, kind in KINDS.items() if not kind.media] == ["text"]
    assert {kind.stream for kind in KINDS.values() if kind.media} == {"audio", "video"}


@pytest.mark.parametrize("modality", MODALITIES)
def test_from_media_without_the_modality_is_a_missing_stream(modality: str) -> None:
    with pytest.raises(NoStreamError):
        KINDS[modality].from_media(DecodedMedia(None, None, None), PRE)


def test_from_media_gives_what_collate_batches() -> None:
    frames = [np.zeros((16, 16, 3), np.uint8)] * PRE.num_frames
    waveform = torch.randn(PRE.sample_rate)  # 1 s
    ctx = CollateContext(PRE, None)
    media = DecodedMedia("Hi.", frames, waveform)
    video, audio = KINDS["video"].from_media(media, PRE), KINDS["audio"].from_media(media, PRE)
    assert video["video"].shape == (3, PRE.num_frames, 16, 16)
    assert audio["audio"].shape[:2] == (1, PRE.n_mels) and audio["audio_length"] == audio["audio"].shape[-1]
    assert KINDS["text"].from_media(DecodedMedia("Hi.", None, None), PRE) == {"text": "Hi."}
    with pytest.raises(NoStreamError, match="no text"):
        KINDS["text"].from_media(DecodedMedia("   ", frames, waveform), PRE)
    with pytest.raises(NoStreamError):  # too short to analyse counts as no audio
        KINDS["audio"].from_media(DecodedMedia(None, None, torch.zeros(10)), PRE)
    batch = KINDS["audio"].collate([{**audio, "audio_present": True}, {"audio_present": False}], ctx)
    assert batch["audio_present"].tolist() == [True, False] and batch["audio_length"][1] == 0


def test_empty_text_from_a_clip_is_refused_with_a_hint() -> None:
    with pytest.raises(MeldError, match="empty text") as caught:
        KINDS["text"].from_clip(None, " ", PRE)
    assert not isinstance(caught.value, NoStreamError) and "--text" in caught.value.hint


def test_absent_from_reads_the_probed_streams() -> None:
    silent = VideoInfo(path=Path("v.mp4"), duration_s=1.0, has_video=True, has_audio=False)
    assert [m for m, kind in KINDS.items() if kind.absent_from(silent)] == ["audio"]
    blind = VideoInfo(path=Path("a.m4a"), duration_s=1.0, has_video=False, has_audio=True)
    assert [m for m, kind in KINDS.items() if kind.absent_from(blind)] == ["video"]


def test_identity_follows_the_text_or_the_file(tmp_path: Path) -> None:
    row = _row()
    assert KINDS["text"].identity(row, tmp_path) != KINDS["text"].identity(_row(text="Hello."), tmp_path)
    assert KINDS["video"].identity(row, tmp_path).endswith("|missing")
    clip = tmp_path / row.clip
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"x")
    first = KINDS["video"].identity(row, tmp_path)
    clip.write_bytes(b"xy")  # a replaced clip is encoded again
    assert first != KINDS["video"].identity(row, tmp_path) and row.clip in first
    assert KINDS["audio"].source(row) == row.audio


def test_cached_audio_carries_its_valid_length() -> None:
    value = np.ones((1, 8, 64), np.float16)
    assert KINDS["audio"].cached_sample(value, 37)["audio_length"] == 37
    text = KINDS["text"].cached_sample(np.ones(4, np.float32), 0)
    assert set(text) == {"text_features"} and text["text_features"].dtype == torch.float32
