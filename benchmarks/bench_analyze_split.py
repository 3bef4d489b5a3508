"""The Processing job's container command on a folder of episodes: one process over all of them, against the
same command on each instance's share (the split `analyze --remote` makes): how much work the split adds.

Run: `python benchmarks/bench_analyze_split.py [--episodes 6] [--instances 2] [--minutes 2] [--threads 2]
[--ckpt best.pt] [--work DIR]`.

The command is the job's own: `build_request` of `meldctl.remote.processing` for a job with `--image` (a meldctl
image runs `meldctl analyze /opt/ml/processing/input/videos --out ... --ckpt ... --subtitles ...` directly), with
/opt/ml moved to a folder per "instance". The instances' inputs are laid out as SageMaker lays them out: the
videos split by S3 key (sorted keys dealt round-robin, as the contract test does), every subtitle file copied to
each. The instances run one after the other, so that each process has the machine's cores as the single run had
them; the measure is work, CPU seconds (user + system, FFmpeg children included) of each cold process: imports,
checkpoint load and the analysis. Inputs as `bench_analyze.py` makes them: its checkpoint (text+audio+video,
MiniLM, R3D-18 weights none, real-size preprocessing) and episodes of 1280x720 24 fps H.264 with grain, with SRTs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_env, load_line, machine, print_table, run_child
from bench_analyze import MORE_SENTENCES, ROOT, _duration_ms, train_or_reuse
from episode import SENTENCES, write_episode, write_srt  # noqa: E402  (bench_analyze put tests/ on the path)

from meldctl.remote.processing import build_request, build_spec  # noqa: E402
from meldctl.settings import RemoteSettings  # noqa: E402

ML = "/opt/ml"
ROLE = "arn:aws:iam::123456789012:role/bench"


def episodes(work: Path, count: int, minutes: float) -> list[tuple[Path, Path]]:
    """`count` distinct episodes of `minutes` each (their lines in another order each), with SRTs; kept in `work`."""
    lines = list(SENTENCES + MORE_SENTENCES)
    per = int(minutes * 60 / 3.6)  # about 3.6 s per sentence and its pause
    made = []
    for n in range(count):
        video, srt = work / f"ep{n + 1:02d}_{minutes:g}min.mp4", work / f"ep{n + 1:02d}_{minutes:g}min.srt"
        if not (video.is_file() and srt.is_file()):
            said = [lines[(n * 5 + i) % len(lines)] for i in range(per)]
            episode = write_episode(video, said, size="1280x720", fps=24, grain=3, preset="veryfast")
            write_srt(srt, episode.cues)
        made.append((video, srt))
    return made


def container_command(ckpt: Path) -> list[str]:
    """ContainerEntrypoint + ContainerArguments of the job `analyze --remote --image ...` creates."""
    remote = RemoteSettings(role=ROLE, image="meldctl:bench", instance_type="ml.m5.xlarge", instance_count=2)
    spec = build_spec("s3://bench/episodes/", "s3://bench/timelines/", str(ckpt), remote, region="us-east-1")
    app = build_request(spec, "s3://bench/model/best.pt", subtitles=True)["AppSpecification"]
    return [*app["ContainerEntrypoint"], *app["ContainerArguments"]]


def lay_out(root: Path, videos: list[tuple[Path, Path]], ckpt: Path) -> None:
    """One instance's /opt/ml: its videos, every subtitle file, the checkpoint (links: nothing is copied)."""
    processing = root / "processing"
    for sub in ("input/videos", "input/subtitles", "input/model", "output/timelines"):
        (processing / sub).mkdir(parents=True)
    for video, _ in videos:
        (processing / "input/videos" / video.name).symlink_to(video)
    (processing / "input/model/best.pt").symlink_to(ckpt)


def run_instance(root: Path, command: list[str], threads: int):  # noqa: ANN201
    assert command[0] == "meldctl", command  # a meldctl image runs meldctl directly: here, this Python's
    args = [sys.executable, "-m", "meldctl", *(part.replace(ML, str(root)) for part in command[1:])]
    env = {**child_env(threads), "SM_ML_ROOT": str(root), "PYTHONPATH": str(ROOT)}
    run = run_child(args, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{root.name} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of each episode")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS) of every process")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint trained on the sample (default: bench_analyze's)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "meldctl-bench-analyze")
    args = parser.parse_args(argv)
    print(machine(args.threads), flush=True)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ckpt = train_or_reuse(args.work, args.ckpt, args.threads)
    made = episodes(args.work, args.episodes, args.minutes)
    command = container_command(ckpt)
    print(f"  inputs ready in {time.perf_counter() - start:.0f} s; {load_line('now')}", flush=True)
    print("command:", " ".join(command), flush=True)
    rows, total = [], {"single": 0.0, "split": 0.0}
    with tempfile.TemporaryDirectory(prefix="meldctl-split-") as tmp:
        shares = [("one process", made)] + [
            (f"instance algo-{k + 1}", made[k :: args.instances]) for k in range(args.instances)
        ]
        for n, (name, share) in enumerate(shares):
            root = Path(tmp) / f"ml{n}"
            lay_out(root, share, ckpt)
            for _, srt in made:  # replicated: every subtitle file on every instance
                (root / "processing/input/subtitles" / srt.name).symlink_to(srt)
            run = run_instance(root, command, args.threads)
            done = sorted((root / "processing/output/timelines").glob("*/timeline.json"))
            assert len(done) == len(share), f"{name}: {len(done)} timelines for {len(share)} videos"
            utterances = sum(len(json.loads(p.read_text())["utterances"]) for p in done)
            total["single" if n == 0 else "split"] += run.cpu_seconds
            rows.append([name, str(len(share)), str(utterances), f"{run.seconds:.0f}", f"{run.cpu_seconds:.1f}",
                         f"{run.max_rss_mb:.0f}"])  # fmt: skip
            print(f"  {name}: {run.seconds:.0f} s wall, {run.cpu_seconds:.1f} CPU s; {load_line('now')}", flush=True)
    ratio = total["split"] / total["single"]
    rows.append([f"{args.instances} instances together", str(len(made)), "", "", f"{total['split']:.1f}", ""])
    seconds = sum(_duration_ms(video) for video, _ in made) / 1000
    print(f"inputs: {len(made)} episodes, {seconds:.0f} s of video in all, 1280x720 24 fps H.264 + AAC with SRTs; "
          f"checkpoint {ckpt}; {load_line('after the runs')}")  # fmt: skip
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print()
    print_table(["process", "videos", "utterances", "wall s", "CPU s", "peak RSS MiB"], rows)
    print()
    verdict = "pass" if ratio <= 1.10 else "FAIL"
    print(f"work of the split / work of one process: {ratio:.3f}x (+{(ratio - 1) * 100:.1f}%); "
          f"target at most 1.10x: {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
