from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import pytest
import soundfile as sf
from meld_fixtures import clip

from meldctl.errors import MediaError
from meldctl.media import ffmpeg as media_ffmpeg
from meldctl.media.ffmpeg import audio_extract_args, extract_audio, ffmpeg_exe, probe_clip


def test_ffmpeg_falls_back_to_the_imageio_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    ffmpeg_exe.cache_clear()
    monkeypatch.setattr(media_ffmpeg.shutil, "which", lambda name: None)
    try:
        assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    finally:
        ffmpeg_exe.cache_clear()


def test_audio_args_ask_for_mono_16k_pcm_wav() -> None:
    args = audio_extract_args(Path("/in/a b.mp4"), Path("/out/.x.tmp"), exe="ff")
    assert args[0] == "ff" and args[args.index("-i") + 1] == "/in/a b.mp4"
    assert args[args.index("-ac") + 1] == "1" and args[args.index("-ar") + 1] == "16000"
    assert args[args.index("-f") + 1] == "wav" and "-vn" in args and "-y" in args
    assert "/out/.x.tmp" in args


def test_probe_reads_streams_and_duration(tmp_path: Path) -> None:
    info = probe_clip(clip("ok", tmp_path / "ok.mp4"))
    assert info.has_video and info.has_audio
    assert info.duration_s == pytest.approx(1.0, abs=0.15)
    silent = probe_clip(clip("silent", tmp_path / "silent.mp4"))
    assert silent.has_video and not silent.has_audio


@pytest.mark.parametrize("content", [None, b"", b"not a video at all" * 50])
def test_probe_rejects_what_does_not_decode(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.mp4"
    if content is None:
        clip("corrupt", path)
    else:
        path.write_bytes(content)
    with pytest.raises(MediaError, match="bad.mp4"):
        probe_clip(path)


def test_extract_audio_writes_16k_mono_wav_atomically(tmp_path: Path) -> None:
    wav = extract_audio(clip("ok", tmp_path / "in dir" / "ok.mp4"), tmp_path / "out" / "ok.wav")
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert [p.name for p in wav.parent.iterdir()] == ["ok.wav"]


def test_failed_extraction_leaves_no_file(tmp_path: Path) -> None:
    wav = tmp_path / "out" / "bad.wav"
    with pytest.raises(MediaError, match="failed"):
        extract_audio(clip("corrupt", tmp_path / "bad.mp4"), wav)
    assert list(wav.parent.iterdir()) == []


def test_extraction_past_the_timeout_is_killed_and_leaves_no_file(tmp_path: Path) -> None:
    wav = tmp_path / "out" / "ok.wav"
    with pytest.raises(MediaError, match="ran past"):
        extract_audio(clip("ok", tmp_path / "ok.mp4"), wav, timeout_s=1e-4)
    assert list(wav.parent.iterdir()) == []
