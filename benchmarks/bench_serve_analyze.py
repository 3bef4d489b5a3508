"""`POST /analyze` on a running `meldctl serve` against `meldctl analyze` on the same episode: wall time, RSS.

Run: `python benchmarks/bench_serve_analyze.py [--minutes 5] [--threads 2] [--repeat 1] [--ckpt best.pt] [--work DIR]`.

Inputs are `bench_analyze.py`'s (made there or here, kept in `--work`): its checkpoint and its synthetic episode
of `--minutes` minutes (1280x720 24 fps with grain, espeak-ng speech) with its SRT. Then, `--repeat` times,
taking turns so that a change of load hits both alike:
- `meldctl analyze VIDEO --subtitles SRT --json`: one cold process (imports, checkpoint load, the analysis),
  wall time and peak RSS from wait4, and the analysis' own seconds from its timeline;
- `POST /analyze` with the same video and SRT as a multipart upload to a `meldctl serve` process started
  before (model loaded, idle): the request's wall time (upload, analysis, answer), and the server's RSS before
  and its peak (VmHWM) after. The answer must equal the command's timeline, time spent aside.
Both use `--threads` torch threads (OMP_NUM_THREADS); the server has `--workers 2` and a time limit of an hour.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from _common import child_env, load_line, machine, print_table, run_child
from bench_analyze import episode_files, train_or_reuse


def start_server(exe: str, ckpt: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [exe, "serve", str(ckpt), "--device", "cpu", "--port", str(port), "--workers", "2",
               "--timeout", "3600"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env(threads))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"meldctl serve exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + "/ping", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("meldctl serve did not start within 300 s")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def cli_run(exe: str, video: Path, srt: Path, ckpt: Path, threads: int) -> tuple[object, dict]:
    with tempfile.TemporaryDirectory() as out:
        command = [exe, "analyze", str(video), "--subtitles", str(srt), "--ckpt", str(ckpt), "--device", "cpu",
                   "--out", out, "--json"]  # fmt: skip
        run = run_child(command, env=child_env(threads))
        if run.returncode != 0:
            raise SystemExit(f"meldctl analyze failed ({run.returncode}):\n{run.stderr[-3000:]}")
        return run, json.loads((Path(out) / "timeline.json").read_text())


def served_run(url: str, video: Path, srt: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    with open(video, "rb") as v, open(srt, "rb") as s:
        answer = requests.post(url + "/analyze", files={"video": (video.name, v), "subtitles": (srt.name, s)},
                               timeout=3600)  # fmt: skip
    seconds = time.perf_counter() - start
    if answer.status_code != 200:
        raise SystemExit(f"POST /analyze: {answer.status_code} {answer.text[:500]}")
    return seconds, answer.json()


def same_timeline(served: dict, printed: dict) -> bool:
    def plain(timeline: dict) -> dict:
        out = {k: v for k, v in timeline.items() if k not in ("seconds", "video")}
        out["segmentation"] = {**out["segmentation"], "source": Path(out["segmentation"]["source"]).name}
        return out

    return plain(served) == plain(printed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the episode")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS) of every process")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, taking turns")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint trained on the sample (default: train one here)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "meldctl-bench-analyze")
    args = parser.parse_args(argv)
    print(machine(args.threads), flush=True)
    exe = shutil.which("meldctl") or str(Path(sys.executable).parent / "meldctl")
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = train_or_reuse(args.work, args.ckpt, args.threads)
    video, srt, cues, seconds = episode_files(args.work, args.minutes)
    print(f"  inputs ready; {load_line('now')}", flush=True)
    process, url = start_server(exe, ckpt, args.threads, args.work / "serve.log")
    cli, served, server_memory = [], [], []
    try:
        idle = memory_mb(process.pid)
        for n in range(args.repeat):
            run, printed = cli_run(exe, video, srt, ckpt, args.threads)
            cli.append((run, printed))
            print(f"  [{n + 1}] meldctl analyze: {run.seconds:.0f} s; {load_line('now')}", flush=True)
            wall, answer = served_run(url, video, srt)
            if not same_timeline(answer, printed):
                raise SystemExit("POST /analyze answered another timeline than meldctl analyze --json")
            served.append((wall, answer))
            server_memory.append(memory_mb(process.pid))
            print(f"  [{n + 1}] POST /analyze: {wall:.0f} s; {load_line('now')}", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(f"{load_line('after the runs')}\n")
    report(ckpt, video, cues, seconds, cli, served, idle, server_memory)


def report(ckpt, video, cues, seconds, cli, served, idle, server_memory) -> None:  # noqa: ANN001
    print(f"inputs: {video.name}, {seconds / 60:.1f} min, 1280x720 24 fps H.264 + AAC, {cues} cues (SRT); "
          f"checkpoint {ckpt} (text+audio+video, MiniLM, R3D-18 weights none, 16 frames, audio up to 8 s); "
          f"runs of each: {len(cli)}\n")  # fmt: skip
    cli_wall = statistics.median(run.seconds for run, _ in cli)
    cli_analysis = statistics.median(timeline["seconds"]["total"] for _, timeline in cli)
    served_wall = statistics.median(wall for wall, _ in served)
    served_analysis = statistics.median(answer["seconds"]["total"] for _, answer in served)
    peak = max(m["VmHWM"] for m in server_memory)
    rows = [
        ["meldctl analyze (cold process)", f"{cli_wall:.1f}", f"{cli_analysis:.1f}", "1.00x",
         f"peak {statistics.median(run.max_rss_mb for run, _ in cli):.0f}"],
        ["POST /analyze (warm server)", f"{served_wall:.1f}", f"{served_analysis:.1f}",
         f"{served_wall / cli_wall:.2f}x", f"idle {idle['VmRSS']:.0f}, peak {peak:.0f}"],
    ]  # fmt: skip
    print_table(["what", "wall s", "analysis s", "wall vs analyze", "RSS MiB"], rows)
    ratio = served_wall / cli_wall
    print(f"\nanalysis alone (the timeline's seconds): POST /analyze {served_analysis / cli_analysis:.2f}x analyze")
    verdict = "pass" if ratio <= 1.1 else "FAIL"
    print(f"target: POST /analyze at most 1.1x the wall time of meldctl analyze: {ratio:.2f}x, {verdict}")


if __name__ == "__main__":
    main()
