"""Write docs/analyze_timeline.png: `meldctl analyze` on a two-minute synthetic episode with an emotional arc.

The episode is tests/episode.py's (espeak-ng sentences with pauses over a moving test pattern, 640x360) with
its SRT; the checkpoint should read text (a text-only model trained on MELD's transcripts gives a picture
worth reading). Needs espeak-ng and FFmpeg.

    python scripts/make_analyze_example.py --ckpt /tmp/meld_text_run/best.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from episode import write_episode, write_srt  # noqa: E402

from meldctl.analysis.pipeline import analyze  # noqa: E402
from meldctl.analysis.plot import plot_timeline  # noqa: E402
from meldctl.inference import Predictor  # noqa: E402

# A calm start, a quarrel, the sadness after it, then making up.
SCENE = (
    "Hey, how are you doing today?",
    "I am fine, I just got back from work.",
    "Do you want some coffee?",
    "Sure, with milk please.",
    "So what did you do this weekend?",
    "We went to the museum on Sunday.",
    "Wait, you ate my sandwich?",
    "I cannot believe you did that!",
    "That was my lunch, you idiot!",
    "Get out of my apartment right now!",
    "Stop yelling at me!",
    "I hate it when you do this!",
    "Ugh, this milk smells absolutely disgusting.",
    "Oh my God, what is that noise?",
    "I am scared, someone is outside the door.",
    "It is just the wind.",
    "I miss her every single day.",
    "I feel so alone since she left.",
    "Nobody ever calls me anymore.",
    "I am sorry, I did not mean it.",
    "It is okay, I forgive you.",
    "Thank you so much for the lovely flowers!",
    "I love you guys, you are the best!",
    "This is the best day of my life!",
    "We are going to the beach on Saturday!",
    "That is wonderful news, congratulations!",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint (one that reads text)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "analyze_timeline.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        episode = write_episode(Path(tmp) / "episode.mp4", SCENE, size="640x360", fps=24)
        srt = write_srt(Path(tmp) / "episode.srt", episode.cues)
        timeline = analyze(episode.video, Predictor.from_path(args.ckpt, "cpu"), subtitles=srt)
    args.out.write_bytes(plot_timeline(timeline, width=12.0, dpi=80))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB), {len(timeline.utterances)} utterances")


if __name__ == "__main__":
    main()
