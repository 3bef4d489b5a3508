from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from media_files import frame_index, write_colour_clip, write_sine_wav

from meldctl.errors import MediaError
from meldctl.media.audio import pcm16_to_float
from meldctl.media.features import uniform_timestamps
from meldctl.media.ffmpeg import pcm_stream
from meldctl.media.stream import AudioReader, probe_video, stream_utterances
from meldctl.media.video import clip_tensor, read_video
from meldctl.model.config import PreprocessConfig

FPS = 8
SMALL = PreprocessConfig(num_frames=4, resize_size=(36, 48), crop_size=32)


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 frames at 8 fps (3 s), a keyframe every 3 frames (so seeks happen), with a sine track."""
    return write_colour_clip(tmp_path_factory.mktemp("stream") / "c.mp4", num_frames=24, fps=FPS, gop=3, audio=True)


def on_screen(t: float) -> int:
    return min(int(math.floor(t * FPS)), 23)


def indices(frames: list[np.ndarray]) -> list[int]:
    return [frame_index(float(f[f.shape[0] // 2, f.shape[1] // 2, 0])) for f in frames]


def test_probe_reads_streams_and_duration(colour_clip: Path, tmp_path: Path) -> None:
    info = probe_video(colour_clip)
    assert info.has_video and info.has_audio and info.duration_s == pytest.approx(3.0, abs=0.05)
    silent = probe_video(write_colour_clip(tmp_path / "s.mp4", num_frames=8))
    assert silent.has_video and not silent.has_audio
    sound = probe_video(write_sine_wav(tmp_path / "a.wav", seconds=2.0))
    assert sound.has_audio and not sound.has_video and sound.duration_s == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), (b"", "empty"), (b"hello, I am a text file\n" * 100, "not a video FFmpeg can read")],
)
def test_probe_refuses_what_is_not_media(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "notes.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=message) as caught:
        probe_video(path)
    assert "\n" not in caught.value.message


def test_frames_are_those_on_screen_at_each_span_s_uniform_times(colour_clip: Path) -> None:
    spans = [(0.0, 1.0), (0.4, 1.4), (2.0, 3.0), (2.9, 3.0)]  # overlapping, then a jump (a seek), then a sliver
    got = list(stream_utterances(probe_video(colour_clip), spans, SMALL, audio=False))
    assert [m.index for m in got] == [0, 1, 2, 3]
    for (start, end), media in zip(spans, got, strict=True):
        assert media.frames is not None and len(media.frames) == 4 and media.frames[0].shape == (32, 32, 3)
        assert indices(media.frames) == [on_screen(t) for t in uniform_timestamps(start, end - start, 4)]


def test_whole_clip_span_matches_read_video(colour_clip: Path) -> None:
    info = probe_video(colour_clip)
    media = next(stream_utterances(info, [(0.0, info.duration_s)], PreprocessConfig(), audio=False))
    assert torch.equal(clip_tensor(media.frames, PreprocessConfig()), read_video(colour_clip, PreprocessConfig()))


def test_audio_spans_are_the_samples_of_the_whole_track(colour_clip: Path) -> None:
    full = np.concatenate(list(pcm_stream(colour_clip, sample_rate=16000)))
    spans = [(0.25, 1.0), (0.5, 2.5), (2.75, 9.0)]  # overlapping, and one past the end of the track
    got = list(stream_utterances(probe_video(colour_clip), spans, SMALL, video=False, max_audio_s=1.5))
    assert all(m.frames is None for m in got)
    assert torch.equal(got[0].waveform, pcm16_to_float(full[4000:16000]))
    assert torch.equal(got[1].waveform, pcm16_to_float(full[8000:32000]))  # capped at max_audio_s
    assert torch.equal(got[2].waveform, pcm16_to_float(full[44000:]))


def test_no_audio_stream_gives_no_waveform(tmp_path: Path) -> None:
    clip = write_colour_clip(tmp_path / "mute.mp4", num_frames=16, fps=FPS)
    got = list(stream_utterances(probe_video(clip), [(0.0, 1.0)], SMALL))
    assert got[0].waveform is None and len(got[0].frames) == 4


def test_audio_only_file_gives_no_frames(tmp_path: Path) -> None:
    wav = write_sine_wav(tmp_path / "a.wav", seconds=2.0)
    got = list(stream_utterances(probe_video(wav), [(0.5, 1.5)], SMALL))
    assert got[0].frames is None and got[0].waveform.shape == (16000,)


def test_spans_must_be_sorted(colour_clip: Path) -> None:
    with pytest.raises(ValueError, match="sorted"):
        list(stream_utterances(probe_video(colour_clip), [(1.0, 2.0), (0.0, 1.0)], SMALL))


def test_audio_reader_keeps_only_a_rolling_window(episode) -> None:  # noqa: ANN001
    info = probe_video(episode.video)
    rate, chunk = 16000, 4096
    full = np.concatenate(list(pcm_stream(episode.video, sample_rate=rate)))
    peak = 0
    with AudioReader(episode.video, sample_rate=rate, chunk_samples=chunk) as reader:
        for start in np.arange(0.0, info.duration_s - 1, 2.0):
            reader.release(start)
            samples = reader.read(start, start + 1.0)
            assert np.array_equal(samples, full[round(start * rate) : round(start * rate) + rate])
            peak = max(peak, reader.buffered_samples)
        with pytest.raises(ValueError, match="released"):
            reader.read(0.0, 1.0)
    # One second read at a time: the buffer never holds more than that plus one chunk on either side.
    assert peak <= rate + 2 * chunk


def test_b_frames_and_seeks_give_exactly_the_frames_on_screen(tmp_path: Path) -> None:
    """x264 veryfast (B-frames, a keyframe every 2 s): every sampled frame equals the one a full decode shows."""
    import bisect

    import av
    from episode import SENTENCES, write_episode

    from meldctl.media.video import FrameConverter

    video = write_episode(tmp_path / "b.mp4", SENTENCES[:3], preset="veryfast").video
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.has_b_frames
        convert = FrameConverter(SMALL)
        decoded = [(frame.time, convert(frame)) for frame in container.decode(stream)]
    times = [t for t, _ in decoded]
    spans = [(0.2, 0.9), (0.5, 2.0), (4.0, 4.3), (7.5, 9.0)]  # overlapping, then gaps longer than a GOP
    got = list(stream_utterances(probe_video(video), spans, SMALL, audio=False))
    for (start, end), media in zip(spans, got, strict=True):
        for t, frame in zip(uniform_timestamps(start, end - start, SMALL.num_frames), media.frames, strict=True):
            assert np.array_equal(frame, decoded[max(bisect.bisect_right(times, t) - 1, 0)][1]), (start, t)
