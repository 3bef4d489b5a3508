"""Tiny MELD-shaped fixtures written by FFmpeg: clips, label CSVs, a folder with every known MELD defect."""

from __future__ import annotations

import atexit
import csv
import functools
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from meldctl.data.meld import COLUMNS
from meldctl.media.ffmpeg import ffmpeg_exe

HEADER = ["Sr No.", *COLUMNS]


def write_clip(path: Path, *, seconds: float = 1.0, audio: bool = True) -> Path:
    """A real mp4: 64x48 test pattern at 10 fps, plus a 440 Hz tone when `audio`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error"]
    args += ["-f", "lavfi", "-i", f"testsrc=s=64x48:r=10:d={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:r=22050:d={seconds}", "-c:a", "aac", "-b:a", "32k"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(args, check=True, capture_output=True)
    return path


@functools.cache
def _bank() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="meldctl-test-clips-"))
    atexit.register(shutil.rmtree, folder, True)
    write_clip(folder / "ok.mp4")
    write_clip(folder / "silent.mp4", audio=False)
    write_clip(folder / "long.mp4", seconds=3.0)
    data = (folder / "ok.mp4").read_bytes()
    # FFmpeg writes the index (moov) at the end: the first half alone is an mp4 that cannot be decoded.
    (folder / "corrupt.mp4").write_bytes(data[: len(data) // 2])
    return folder


def clip(kind: str, dest: Path) -> Path:
    """Copy a cached clip of `kind` (ok, silent, long, corrupt) to `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_bank() / f"{kind}.mp4", dest)
    return dest


def csv_text(rows: list[tuple]) -> str:
    """A MELD label CSV for rows of (dialogue, utterance, text, emotion, sentiment[, start, end])."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for number, row in enumerate(rows, start=1):
        dia, utt, text, emotion, sentiment, *span = row
        start, end = span or ("0:00:01,000", "0:00:02,500")
        writer.writerow([number, text, "Ross", emotion, sentiment, dia, utt, 1, 1, start, end])
    return buffer.getvalue()


def write_csv(path: Path, rows: list[tuple], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_text(rows).encode(encoding))
    return path


def make_defect_folder(root: Path) -> Path:
    """An extracted MELD folder (train in `train/train_splits/`) with every known defect.

    train: dia0_utt0 ok, dia0_utt1 corrupt, dia1_utt0 too long (3 s; use max_clip_seconds=2).
    dev: dia0_utt0 ok, dia0_utt1 missing (no file), dia66_utt9 a clip with no CSV row.
    test: dia0_utt0 ok, dia155_utt3 zero-length span, dia1_utt0 no audio stream,
    dia108_utt2 and final_videos_testdia101_utt0 clips with no CSV row.
    """
    write_csv(
        root / "train_sent_emo.csv",
        [
            (0, 0, "Hi there.", "joy", "positive"),
            (0, 1, "Oh no.", "sadness", "negative"),
            (1, 0, "Wow", "surprise", "positive"),
        ],
    )
    write_csv(
        root / "dev_sent_emo.csv", [(0, 0, "Okay.", "neutral", "neutral"), (0, 1, "No way!", "anger", "negative")]
    )
    write_csv(
        root / "test_sent_emo.csv",
        [
            (0, 0, "Fine.", "neutral", "neutral"),
            (155, 3, "Oh my God.", "surprise", "negative", "0:12:32,632", "0:12:32,632"),
            (1, 0, "Ew.", "disgust", "negative"),
        ],
    )
    train, dev, test = (
        root / "train" / "train_splits",
        root / "dev_splits_complete",
        root / "output_repeated_splits_test",
    )
    clip("ok", train / "dia0_utt0.mp4")
    clip("corrupt", train / "dia0_utt1.mp4")
    clip("long", train / "dia1_utt0.mp4")
    clip("ok", dev / "dia0_utt0.mp4")
    clip("ok", dev / "dia66_utt9.mp4")
    clip("ok", test / "dia0_utt0.mp4")
    clip("ok", test / "dia155_utt3.mp4")
    clip("silent", test / "dia1_utt0.mp4")
    clip("ok", test / "dia108_utt2.mp4")
    clip("ok", test / "final_videos_testdia101_utt0.mp4")
    return root
