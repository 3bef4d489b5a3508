"""A synthetic "episode" for `meldctl analyze`: sentences spoken by espeak-ng with pauses, over a moving picture.

Used by the analysis tests (about 30 s) and by `benchmarks/bench_analyze.py` (several minutes). Needs the
`espeak-ng` program (`apt-get install espeak-ng`; `.ci/run` installs it) and FFmpeg (the system's or the
imageio-ffmpeg binary). Every cue's time is where the speech really is: each sentence's WAV is trimmed to
its first and last audible sample before it is placed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meldctl.media.ffmpeg import ffmpeg_exe

SENTENCES = (
    "Hey, how are you doing today?",
    "I cannot believe you ate my sandwich!",
    "That is the best news I have heard all year.",
    "Please leave me alone for a while.",
    "Oh no, the coffee shop is closed again.",
    "We are going to the beach on Saturday.",
    "Why would anybody do something like that?",
    "Thank you so much for the lovely flowers.",
)
PAUSES = (1.0, 1.3, 1.6)  # seconds of silence after each sentence, in turn
SPEECH_RATE = 22050  # espeak-ng's output rate


@dataclass(frozen=True)
class Cue:
    """Where one sentence is spoken (seconds) and what it says."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Episode:
    video: Path
    cues: list[Cue]
    duration: float


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, folder: Path) -> np.ndarray:
    """espeak-ng saying `text`: int16 `[samples]` at 22,050 Hz, trimmed to the audible part."""
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), text], check=True)
    with wave.open(str(wav)) as handle:
        assert handle.getframerate() == SPEECH_RATE and handle.getnchannels() == 1
        samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 200)
    return samples[loud[0] : loud[-1] + 1]


def compose(sentences: list[str], folder: Path, *, lead_in: float = 1.0) -> tuple[np.ndarray, list[Cue]]:
    """The whole soundtrack (int16 at 22,050 Hz) and its cues: `lead_in` s of silence, then each sentence
    followed by a pause from `PAUSES`. Each distinct sentence is synthesised once."""
    spoken = {text: speak(text, folder) for text in dict.fromkeys(sentences)}
    parts, cues = [np.zeros(round(lead_in * SPEECH_RATE), np.int16)], []
    position = len(parts[0])
    for n, text in enumerate(sentences):
        samples = spoken[text]
        cues.append(Cue(position / SPEECH_RATE, (position + len(samples)) / SPEECH_RATE, text))
        pause = np.zeros(round(PAUSES[n % len(PAUSES)] * SPEECH_RATE), np.int16)
        parts += [samples, pause]
        position += len(samples) + len(pause)
    return np.concatenate(parts), cues


def write_episode(
    path: Path,
    sentences: list[str] | tuple[str, ...] = SENTENCES,
    *,
    size: str = "320x240",
    fps: int = 12,
    audio: bool = True,
    grain: int = 0,
    preset: str = "ultrafast",
) -> Episode:
    """Write the episode to `path` (mp4: H.264 + AAC) and return it with its cues.

    Args:
        path: The video to write.
        sentences: Spoken in order (repeat entries for a longer episode).
        size: Picture size, WIDTHxHEIGHT.
        fps: Frame rate.
        audio: False writes the same picture with no audio stream at all.
        grain: Strength of FFmpeg's temporal noise filter: sensor grain makes decoding cost what real footage
            costs (0: the bare test pattern).
        preset: x264 preset.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples, cues = compose(list(sentences), folder)
        duration = len(samples) / SPEECH_RATE
        soundtrack = folder / "soundtrack.wav"
        with wave.open(str(soundtrack), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(SPEECH_RATE)
            handle.writeframes(samples.tobytes())
        picture = f"testsrc2=s={size}:r={fps}" + (f",noise=alls={grain}:allf=t" if grain else "")
        args = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", picture]
        args += ["-i", str(soundtrack), "-map", "0:v", "-map", "1:a"] if audio else ["-map", "0:v"]
        args += ["-t", f"{duration:.3f}", "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
        args += ["-g", str(2 * fps)]  # a keyframe every 2 s, as broadcast video has
        args += ["-c:a", "aac", "-b:a", "64k"] if audio else []
        subprocess.run([*args, str(path)], check=True)
    return Episode(path, cues, duration)


def srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def write_srt(path: Path, cues: list[Cue]) -> Path:
    """An SRT with one cue per sentence, times to the millisecond."""
    blocks = [f"{n}\n{srt_time(c.start)} --> {srt_time(c.end)}\n{c.text}\n" for n, c in enumerate(cues, 1)]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path
