"""Re-create the embedded sample dataset in meldctl/data/sample/ from the real MELD label CSVs.

Each selected utterance (real text and labels) gets a short MELD-named clip: moving test-pattern video
(H.264, 160x120, 12 fps) and espeak-ng speaking the utterance (AAC). Needs ffmpeg (with libx264) and
espeak-ng; the files it writes are committed, so tests and the demo need neither.

    python scripts/make_sample.py --csv-dir ../shared/data/meld
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from meldctl.data.meld import CLIP_FOLDERS, CSV_NAMES, decode_csv, parse_timestamp
from meldctl.labels import EMOTIONS
from meldctl.media.ffmpeg import ffmpeg_exe

OUT = Path(__file__).resolve().parents[1] / "meldctl" / "data" / "sample"
PER_EMOTION = {"train": 6, "dev": 2, "test": 2}
SIZE, FPS = "160x120", 12
MIN_S, MAX_S = 1.5, 3.0


def _spread(row: dict[str, str]) -> str:
    # A hash order spreads the picks over many dialogues instead of the first few.
    return hashlib.sha1(f"{row['Dialogue_ID']}_{row['Utterance_ID']}".encode()).hexdigest()


def _usable(row: dict[str, str]) -> bool:
    words = row["Utterance"].split()
    span = parse_timestamp(row["EndTime"]) - parse_timestamp(row["StartTime"])
    return 3 <= len(words) <= 8 and 1.0 <= span <= 4.0 and row["Utterance"].isascii()


def select_rows(text: str, per_emotion: int) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV header and `per_emotion` usable rows of each emotion, in the CSV's order."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [row for row in reader if _usable(row)]
    chosen: list[dict[str, str]] = []
    for emotion in EMOTIONS:
        chosen += sorted((r for r in rows if r["Emotion"] == emotion), key=_spread)[:per_emotion]
    order = {id(r): i for i, r in enumerate(rows)}
    return list(reader.fieldnames or []), sorted(chosen, key=lambda r: order[id(r)])


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write rows as MELD does: CRLF line endings, UTF-8, no BOM."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))


def _speech(text: str, wav: Path) -> float:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "175", "-w", str(wav), text], check=True)
    with wave.open(str(wav)) as handle:
        return handle.getnframes() / handle.getframerate()


def clip_args(speech: Path, out: Path, seconds: float, hue: int) -> list[str]:
    """FFmpeg arguments for one sample clip: moving pattern video plus the speech, `seconds` long."""
    return [
        ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=s={SIZE}:r={FPS}",
        "-i", str(speech),
        "-filter_complex", f"[0:v]hue=h={hue}[v];[1:a]apad[a]",
        "-map", "[v]", "-map", "[a]", "-t", f"{seconds:.2f}",
        "-c:v", "libx264", "-preset", "veryslow", "-crf", "34", "-pix_fmt", "yuv420p", "-g", str(2 * FPS),
        "-c:a", "aac", "-b:a", "24k", "-ac", "1", "-ar", "22050",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def make_split(split: str, csv_dir: Path, work: Path) -> int:
    """Write one split's CSV and clips under OUT; return the number of utterances."""
    header, rows = select_rows(decode_csv((csv_dir / CSV_NAMES[split]).read_bytes()), PER_EMOTION[split])
    write_csv(OUT / CSV_NAMES[split], header, rows)
    clips = OUT / CLIP_FOLDERS[split]
    clips.mkdir(parents=True)
    for row in rows:
        name = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
        speech = work / f"{split}_{name}.wav"
        seconds = min(max(_speech(row["Utterance"], speech) + 0.2, MIN_S), MAX_S)
        # The hue varies per clip but not by emotion: the video must not leak the label.
        hue = int(hashlib.sha1(name.encode()).hexdigest()[:4], 16) % 360
        subprocess.run(clip_args(speech, clips / f"{name}.mp4", seconds, hue), check=True)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv-dir", type=Path, default=Path("../shared/data/meld"), help="folder of MELD CSVs")
    args = parser.parse_args()
    for split in CSV_NAMES:
        for old in (OUT / CSV_NAMES[split], OUT / CLIP_FOLDERS[split]):
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        counts = {split: make_split(split, args.csv_dir, Path(work)) for split in CSV_NAMES}
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {counts} utterances to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
