from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meldctl.data.download import download, total_size
from meldctl.errors import DataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Server:
    """A local HTTP server for PAYLOAD; `cuts` first responses stop halfway and close the connection."""

    def __init__(self, cuts: int, honour_range: bool = True) -> None:
        self.cuts, self.honour_range, self.ranges = cuts, honour_range, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header and server.honour_range else 0
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.end_headers()
                if server.cuts > 0:
                    server.cuts -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True  # the reset MELD's host is known for
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/MELD.Raw.tar.gz"


@pytest.fixture
def serve() -> Iterator:
    servers: list[_Server] = []

    def start(cuts: int = 0, honour_range: bool = True) -> _Server:
        server = _Server(cuts, honour_range)
        threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_cut_download_resumes_with_range_requests(tmp_path: Path, serve) -> None:  # noqa: ANN001
    server = serve(cuts=2)
    seen: list[tuple[int, int | None]] = []
    result = download(server.url, tmp_path / "raw" / "m.tar.gz", backoff_s=0, progress=lambda d, t: seen.append((d, t)))
    assert result.path.read_bytes() == PAYLOAD and result.downloaded
    assert server.ranges[0] is None and all(r and r.startswith("bytes=") for r in server.ranges[1:])
    assert len(server.ranges) == 3
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "raw" / "m.tar.gz.part").exists()


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path: Path, serve) -> None:  # noqa: ANN001
    server = serve(cuts=1, honour_range=False)
    result = download(server.url, tmp_path / "m.tar.gz", backoff_s=0)
    assert result.path.read_bytes() == PAYLOAD


def test_checksum_is_verified(tmp_path: Path, serve) -> None:  # noqa: ANN001
    server = serve()
    with pytest.raises(DataError, match="SHA-256 does not match"):
        download(server.url, tmp_path / "m.tar.gz", sha256="0" * 64, backoff_s=0)
    assert not (tmp_path / "m.tar.gz").exists()
    good = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(server.url, tmp_path / "m.tar.gz", sha256=good, backoff_s=0).size == len(PAYLOAD)


def test_a_finished_download_is_not_fetched_again(tmp_path: Path) -> None:
    (tmp_path / "m.tar.gz").write_bytes(b"done")
    result = download("http://127.0.0.1:9/never", tmp_path / "m.tar.gz")
    assert not result.downloaded and result.size == 4


def test_offline_names_the_local_path_option(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match="offline") as info:
        download(f"http://127.0.0.1:{port}/MELD.Raw.tar.gz", tmp_path / "m.tar.gz", backoff_s=0)
    assert "--source PATH" in (info.value.hint or "")


def test_total_size_from_headers() -> None:
    assert total_size(206, {"Content-Range": "bytes 10-99/100", "Content-Length": "90"}, 10) == 100
    assert total_size(200, {"Content-Length": "100"}, 0) == 100
    assert total_size(200, {}, 0) is None
