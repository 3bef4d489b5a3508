from __future__ import annotations

from pathlib import Path

import pytest
import torch
from media_files import (
    BLUE,
    GREEN,
    frame_index,
    write_colour_clip,
    write_sine_wav,
    write_split_clip,
    write_textured_clip,
)

import meldctl.media.video as video
from meldctl.errors import MediaError, NoStreamError
from meldctl.media.features import uniform_frame_indices
from meldctl.media.video import read_video
from meldctl.model.config import PreprocessConfig

PREPROCESS = PreprocessConfig()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


def _pixels(clip: torch.Tensor, preprocess: PreprocessConfig = PREPROCESS) -> torch.Tensor:
    """Centre pixel of every frame back on the 0-255 scale: `[T, 3]`."""
    h, w = clip.shape[2] // 2, clip.shape[3] // 2
    std, mean = torch.tensor(preprocess.std), torch.tensor(preprocess.mean)
    return (clip[:, :, h, w].T * std + mean) * 255  # [T, 3]


def _indices(clip: torch.Tensor, preprocess: PreprocessConfig = PREPROCESS) -> list[int]:
    return [frame_index(red) for red in _pixels(clip, preprocess)[:, 0].tolist()]


def test_mp4_frames_are_uniform_rgb_and_normalised(clips: Path) -> None:
    clip = read_video(write_colour_clip(clips / "a.mp4", num_frames=24, width=160, height=90), PREPROCESS)
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == torch.float32
    assert _indices(clip) == uniform_frame_indices(24, 16)  # the whole clip, first frame to last
    rgb = _pixels(clip)
    # Red is the index code; green and blue are fixed, so BGR order would show here.
    assert torch.allclose(rgb[:, 1], torch.full((16,), float(GREEN)), atol=4)
    assert torch.allclose(rgb[:, 2], torch.full((16,), float(BLUE)), atol=4)


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".avi", ".mov"])
def test_other_containers(clips: Path, suffix: str) -> None:
    clip = read_video(write_colour_clip(clips / f"b{suffix}", num_frames=24), PREPROCESS)
    assert clip.shape == (3, 16, 112, 112)
    indices = _indices(clip)
    assert indices[0] <= 1 and indices[-1] == 23 and indices == sorted(indices)
    assert abs(_pixels(clip)[:, 1].mean().item() - GREEN) < 4


def test_mkv_reports_no_frame_count_or_duration(clips: Path) -> None:
    import av

    path = write_colour_clip(clips / "nometa.mkv", num_frames=24)
    with av.open(str(path)) as container:  # the case this test is about: nothing to go by but packets
        assert container.streams.video[0].frames == 0 and container.streams.video[0].duration is None
    assert _indices(read_video(path, PREPROCESS)) == uniform_frame_indices(24, 16)


def test_short_clip_repeats_frames(clips: Path) -> None:
    clip = read_video(write_colour_clip(clips / "short.mp4", num_frames=5), PREPROCESS)
    assert clip.shape == (3, 16, 112, 112)
    assert _indices(clip) == uniform_frame_indices(5, 16)


def test_variable_frame_rate_is_sampled_uniformly_in_time(clips: Path) -> None:
    # 10 frames 40 ms apart, then 10 frames 160 ms apart: sampling by index would crowd the first 0.4 s.
    times = [0.04 * i for i in range(10)] + [0.4 + 0.16 * i for i in range(10)]
    preprocess = PreprocessConfig(num_frames=8)
    picked = [times[i] for i in _indices(read_video(write_colour_clip(clips / "vfr.mkv", times=times), preprocess))]
    targets = [(k + 0.5) * 2.0 / 8 for k in range(8)]
    assert all(abs(p - t) < 0.25 for p, t in zip(picked, targets, strict=True)), picked


def test_odd_resolution(clips: Path) -> None:
    clip = read_video(write_colour_clip(clips / "odd.mp4", num_frames=8, width=90, height=34), PREPROCESS)
    assert clip.shape == (3, 16, 112, 112)
    assert _indices(clip) == uniform_frame_indices(8, 16)


def test_custom_size_and_count(clips: Path) -> None:
    preprocess = PreprocessConfig(num_frames=4, resize_size=(36, 48), crop_size=32)
    clip = read_video(write_colour_clip(clips / "c.mp4", num_frames=24), preprocess)
    assert clip.shape == (3, 4, 32, 32)
    assert _indices(clip, preprocess) == uniform_frame_indices(24, 4)


def test_seeks_past_keyframes_instead_of_decoding_everything(clips: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_colour_clip(clips / "gop.mp4", num_frames=24, gop=5)
    decoded: list[int] = []
    seeks: list[int] = []
    real = video.decode_from

    def spy(container, stream, pts, keep):  # noqa: ANN001, ANN202
        seeks.append(pts)
        for frame in real(container, stream, pts, keep):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(video, "decode_from", spy)
    preprocess = PreprocessConfig(num_frames=2)
    clip = read_video(path, preprocess)
    assert _indices(clip, preprocess) == uniform_frame_indices(24, 2) == [6, 18]
    assert len(seeks) == 2  # to the keyframes before frames 6 and 18
    assert len(decoded) < 12  # two short runs from a keyframe, not all 24 frames


def test_threads_do_not_change_the_result(clips: Path) -> None:
    path = write_colour_clip(clips / "t.mp4", num_frames=24, gop=7)
    assert torch.equal(read_video(path, PREPROCESS, threads=1), read_video(path, PREPROCESS))
    assert _indices(read_video(path, PREPROCESS, threads=1)) == uniform_frame_indices(24, 16)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        read_video(tmp_path / "nope.mp4", PREPROCESS)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(MediaError, match="empty") as raised:
        read_video(tmp_path / "empty.mp4", PREPROCESS)
    assert raised.value.hint


def test_text_file_named_mp4(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n" * 100)
    with pytest.raises(MediaError, match="cannot read video"):
        read_video(tmp_path / "notes.mp4", PREPROCESS)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(NoStreamError, match="no video stream"):
        read_video(write_sine_wav(tmp_path / "tone.wav"), PREPROCESS)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not a file"):
        read_video(tmp_path, PREPROCESS)


def test_geometry_is_the_kinetics_preset_of_the_weights(clips: Path) -> None:
    """On a 16:9 clip, read_video's tensor is what R3D_18_Weights.KINETICS400_V1.transforms() makes of the same
    decoded frames: resize to 128x171 (no antialiasing), centre crop 112, /255, Kinetics mean and std."""
    import av
    import numpy as np
    from torchvision.models.video import R3D_18_Weights

    path = write_textured_clip(clips / "wide.mp4", width=320, height=180, num_frames=16)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 16  # so read_video's 16 uniform samples are exactly these frames
    reference = R3D_18_Weights.KINETICS400_V1.transforms()(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
    ours = read_video(path, PREPROCESS)
    assert ours.shape == reference.shape == (3, 16, 112, 112)
    difference = (ours - reference).abs()
    one_level = 1 / 255 / min(PREPROCESS.std)  # one uint8 step after normalisation
    assert difference.max().item() <= one_level + 1e-5  # a rounding tie at most, see _BilinearCrop
    assert difference.mean().item() < 1e-4
    squashed = torch.nn.functional.interpolate(
        reference.new_tensor(np.stack(frames)).permute(3, 0, 1, 2)[None].float(), size=(16, 112, 112)
    )
    assert (squashed[0] / 255 - ours).abs().mean() > 0.05  # the old whole-frame squash is measurably different


def test_rotation_metadata_is_applied(clips: Path) -> None:
    """A phone clip stored landscape with a 90 degree display matrix is read upright, as players show it."""
    import av

    from meldctl.media.ffmpeg import ffmpeg_exe

    plain = write_split_clip(clips / "split.mp4")  # bright left half, dark right half
    rotated = clips / "rotated.mp4"
    import subprocess

    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation:v:0", "90", "-i", str(plain), "-c", "copy",
         str(rotated)],
        check=True,
    )  # fmt: skip
    with av.open(str(rotated)) as container:
        assert next(container.decode(video=0)).rotation == 90
    preprocess = PreprocessConfig(num_frames=2, resize_size=(64, 64), crop_size=64)
    upright, turned = read_video(plain, preprocess), read_video(rotated, preprocess)
    assert upright[:, :, :, :32].mean() > upright[:, :, :, 32:].mean() + 1  # bright on the left
    assert turned[:, :, 32:, :].mean() > turned[:, :, :32, :].mean() + 1  # turned counter-clockwise: bright below


@pytest.mark.parametrize("size", [(720, 1280), (1080, 1920), (1280, 720), (100, 90), (128, 171), (77, 333)])
@pytest.mark.parametrize(("resize", "crop"), [((128, 171), 112), ((64, 64), 56), ((200, 300), 150)])
def test_bilinear_crop_is_torchvision_resize_then_centre_crop(size, resize, crop) -> None:
    """The gathered resize + crop against torchvision's F.resize (bilinear, no antialias) + F.center_crop, on
    noise and on flat patches (where rounding ties are likeliest): at most one level, almost never."""
    import numpy as np
    from torchvision.transforms import functional as F  # noqa: N812

    from meldctl.media.video import _BilinearCrop

    rng = np.random.default_rng(sum(size) + crop)
    noise = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    blocks = rng.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
    patches = np.repeat(np.repeat(blocks, 8, 0), 8, 1)[: size[0], : size[1]]
    crop_of = _BilinearCrop(size, resize, crop)
    for image in (noise, np.ascontiguousarray(patches)):
        chw = torch.from_numpy(image).permute(2, 0, 1)
        expected = F.center_crop(F.resize(chw, list(resize), antialias=False), [crop, crop]).permute(1, 2, 0)
        ours = crop_of(image)
        assert ours.shape == (crop, crop, 3) and ours.dtype == np.uint8
        difference = np.abs(ours.astype(int) - expected.numpy().astype(int))
        assert difference.max() <= 1
        assert (difference > 0).mean() < 1e-3
