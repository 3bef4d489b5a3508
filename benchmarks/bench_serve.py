"""Serving: `/predict` latency beside the in-process `Predictor.predict`, throughput by clients and batching, RSS.

Run: `python benchmarks/bench_serve.py [--ckpt best.pt] [--limit 24] [--requests 24] [--threads 1]`.
Without --ckpt it prepares the embedded sample and trains the checkpoint `bench_predict.py` uses (1 epoch,
text+audio+video, MiniLM, R3D-18 with random weights: the compute of Kinetics-400 weights), then:
- latency: for each of the first `--limit` clips, one in-process `Predictor.predict(clip, text)` and one
  `POST /predict` of the same clip and text to a `meldctl serve` process on 127.0.0.1 (upload, decode,
  forward, JSON), alternating clip by clip so that load changes hit both alike; p50 and p95 of each;
- throughput: `--requests` requests spread over 1, 4 and 8 concurrent clients (one HTTP session each),
  against a server batching up to 8 requests per forward and against one with `--max-batch 1` (both
  running, taking turns at each number of clients);
  requests per second, the mean batch the server ran (from /health), and /ping latency measured every
  100 ms while 8 clients load the server (SageMaker's health check must answer within 2 s);
- the forward alone, in process: `Predictor.run` on 4 prepared clips as one batch against the same 4 one by
  one, alternating, median of 3: what a batch costs on this machine, whatever HTTP does;
- memory: each server's peak RSS (VmHWM from /proc, which exec resets: not the benchmark's own peak).
The benchmark and both servers use `--threads` torch threads (OMP_NUM_THREADS for the servers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import torch
from _common import child_env, load_line, machine, print_table
from bench_predict import train_checkpoint

from meldctl.data.manifest import read_manifest
from meldctl.inference import Predictor
from meldctl.prepare import prepare
from meldctl.settings import DataSettings

CLIENTS = (1, 4, 8)
BATCHING, SINGLE = "batching (--max-batch 8)", "no batching (--max-batch 1)"


class Server:
    """A `meldctl serve` process on a free port of 127.0.0.1."""

    def __init__(self, ckpt: Path, max_batch: int, threads: int, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        exe = shutil.which("meldctl") or str(Path(sys.executable).parent / "meldctl")
        command = [exe, "serve", str(ckpt), "--device", "cpu", "--port", str(self.port),
                   "--max-batch", str(max_batch), "--workers", "2"]  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=child_env(threads))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"meldctl serve exited: {log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise SystemExit("meldctl serve did not start")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def batches(self) -> dict:
        return requests.get(self.url + "/health", timeout=10).json()["serving"]["batches"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def post(session: requests.Session, url: str, clip: Path, text: str) -> float:
    """Seconds for one `POST /predict` of the clip and its text."""
    start = time.perf_counter()
    with open(clip, "rb") as handle:
        response = session.post(url + "/predict", files={"clip": (clip.name, handle)}, data={"text": text}, timeout=600)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"/predict answered {response.status_code}: {response.text}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(predictor: Predictor, server: Server, clips: list[tuple[Path, str]]) -> tuple[list[float], list[float]]:
    """In-process predict and HTTP /predict, alternating clip by clip; one warm-up of each first."""
    session = requests.Session()
    predictor.predict(*clips[0])
    post(session, server.url, *clips[0])
    local, http = [], []
    for clip, text in clips:
        start = time.perf_counter()
        predictor.predict(clip, text)
        local.append(time.perf_counter() - start)
        http.append(post(session, server.url, clip, text))
    return local, http


def batch_cost(predictor: Predictor, clips: list[tuple[Path, str]], repeats: int = 3) -> tuple[float, float]:
    """Median seconds of `run` on 4 prepared clips as one batch, and of the same 4 run one by one."""
    prepared = [predictor.prepare(clip, text) for clip, text in clips[:4]]
    together, apart = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.run(prepared)
        together.append(time.perf_counter() - start)
        start = time.perf_counter()
        for one in prepared:
            predictor.run([one])
        apart.append(time.perf_counter() - start)
    return statistics.median(together), statistics.median(apart)


def throughput(server: Server, clips: list[tuple[Path, str]], clients: int, requests_n: int, ping: bool) -> dict:
    """Requests per second with `clients` concurrent clients; the mean batch; /ping latencies meanwhile."""
    jobs = [clips[i % len(clips)] for i in range(requests_n)]
    sessions = threading.local()
    pings: list[float] = []
    done = threading.Event()

    def one(job: tuple[Path, str]) -> float:
        if not hasattr(sessions, "s"):
            sessions.s = requests.Session()
        return post(sessions.s, server.url, *job)

    def pinger() -> None:
        while not done.is_set():
            start = time.perf_counter()
            requests.get(server.url + "/ping", timeout=30).raise_for_status()
            pings.append(time.perf_counter() - start)
            done.wait(0.1)

    before = server.batches()
    watcher = threading.Thread(target=pinger) if ping else None
    if watcher:
        watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, jobs))
    seconds = time.perf_counter() - start
    done.set()
    if watcher:
        watcher.join()
    after = server.batches()
    batches = after["batches"] - before["batches"]
    return {"rps": requests_n / seconds, "batch": (after["requests"] - before["requests"]) / max(1, batches),
            "pings": pings}  # fmt: skip


def sample_clips(folder: Path, limit: int) -> list[tuple[Path, str]]:
    data_dir = folder / "sample"
    if not (data_dir / "manifest").is_dir():
        prepare(DataSettings(source="sample", data_dir=data_dir))
    rows = [r for split in ("train", "dev", "test") for r in read_manifest(data_dir, split) if r.status == "ok"]
    return [(data_dir / r.clip, r.text) for r in rows[:limit]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a checkpoint trained on the sample (default: train one here)")
    parser.add_argument("--limit", type=int, default=24, help="clips for the latency rows")
    parser.add_argument("--requests", type=int, default=24, help="requests per throughput row")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine(args.threads), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = args.ckpt or train_checkpoint(folder, args.threads)
        clips = sample_clips(folder, args.limit)
        predictor = Predictor.from_path(ckpt, "cpu")
        servers = {
            BATCHING: Server(ckpt, 8, args.threads, folder / "batching.log"),
            SINGLE: Server(ckpt, 1, args.threads, folder / "single.log"),
        }
        local, http = latency(predictor, servers[BATCHING], clips)
        print(f"  latency done ({len(clips)} clips); {load_line('now')}", flush=True)
        forward = batch_cost(predictor, clips)
        del predictor
        runs: dict[str, dict] = {name: {} for name in servers}
        for clients in CLIENTS:  # the two servers take turns at each load, so drifting load hits both alike
            for name, server in servers.items():
                runs[name][clients] = throughput(server, clips, clients, args.requests, ping=clients == 8)
            print(f"  {clients} client(s) done; {load_line('now')}", flush=True)
        for name, server in servers.items():
            runs[name]["rss"] = server.peak_rss_mb()
            server.stop()
    report(args, ckpt, clips, local, http, forward, runs)


def report(args, ckpt, clips, local, http, forward, runs) -> None:  # noqa: ANN001
    origin = "trained here" if args.ckpt is None else str(args.ckpt)
    print(f"\ninputs: {len(clips)} clips of the embedded sample with their text; checkpoint {origin} (text+audio+video,"
          f" MiniLM, R3D-18, 16 frames resized to 128x171, centre crop 112x112, audio up to 8 s);"
          f" {args.requests} requests per throughput row; "
          f"server: meldctl serve --device cpu --workers 2, OMP_NUM_THREADS={args.threads}")  # fmt: skip
    print(f"{load_line('after the runs')}\n")
    p50_local, p50_http = statistics.median(local), statistics.median(http)
    rows = [
        ["Predictor.predict in process", f"{p50_local * 1000:.0f}", f"{percentile(local, 0.95) * 1000:.0f}", "1.00x"],
        ["POST /predict to meldctl serve", f"{p50_http * 1000:.0f}", f"{percentile(http, 0.95) * 1000:.0f}",
         f"{p50_http / p50_local:.2f}x"],
    ]  # fmt: skip
    print_table(["latency per request", "p50 ms", "p95 ms", "p50 vs in-process"], rows)
    print()
    single = runs[SINGLE]
    rows = []
    for name, run in runs.items():
        for clients in CLIENTS:
            ratio = run[clients]["rps"] / single[clients]["rps"]
            rows.append([f"{name}, {clients} client(s)", f"{run[clients]['rps']:.2f}",
                         f"{run[clients]['batch']:.2f}", f"{ratio:.2f}x"])  # fmt: skip
    print_table(["throughput", "requests/s", "mean batch", "vs no batching"], rows)
    print()
    together, apart = forward
    print_table(
        ["forward alone, in process (median of 3)", "s", "vs one by one"],
        [["Predictor.run, 4 clips one by one", f"{apart:.2f}", "1.00x"],
         ["Predictor.run, the same 4 clips as one batch", f"{together:.2f}", f"{together / apart:.2f}x"]],
    )  # fmt: skip
    print()
    pings = runs[BATCHING][8]["pings"] + single[8]["pings"]
    rss = [run["rss"] for run in runs.values()]
    print_table(
        ["server", "value"],
        [
            ["/ping during 8 clients: p95 / max ms", f"{percentile(pings, 0.95) * 1000:.0f} / {max(pings) * 1000:.0f}"],
            ["peak RSS, batching / no batching (MiB)", f"{rss[0]:.0f} / {rss[1]:.0f}"],
        ],
    )
    ratio = p50_http / p50_local
    print(f"\ntarget: /predict p50 <= 1.2x in-process predict: {ratio:.2f}x -> {'PASS' if ratio <= 1.2 else 'FAIL'}")
    print(f"target: server peak RSS < 2 GB: {max(rss):.0f} MiB -> {'PASS' if max(rss) < 2048 else 'FAIL'}")
    print(f"target: /ping under load < 2 s: {max(pings):.2f} s -> {'PASS' if max(pings) < 2 else 'FAIL'}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
