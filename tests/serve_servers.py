"""`meldctl serve` for the tests: a real server process, or uvicorn in a thread, on 127.0.0.1 at a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from aws_servers import _shared, free_port
from typer.testing import CliRunner

MELDCTL = Path(sys.executable).parent / "meldctl"


@dataclass
class ServeProcess:
    """A `meldctl serve` process; `tmp` is its TMPDIR, `log` its stderr."""

    process: subprocess.Popen
    url: str
    tmp: Path
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def leftovers(self) -> list[Path]:
        """Request folders still in the server's TMPDIR (there must be none once requests are answered)."""
        return sorted(self.tmp.glob("meldctl-serve-*"))


def start_serve(
    args: list[str], folder: Path, *, env: dict[str, str] | None = None, port: int | None = None
) -> ServeProcess:
    """Start `meldctl serve ARGS --port PORT` with its own TMPDIR under `folder`; wait until /ping answers 200."""
    port = port or free_port()
    tmp = folder / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    log = folder / "serve.log"
    clean = {name: value for name, value in os.environ.items() if not name.startswith("MELDCTL_")}
    environ = {**clean, **(env or {}), "TMPDIR": str(tmp)}
    command = [str(MELDCTL), "serve", *args]
    if "SAGEMAKER_BIND_TO_PORT" not in environ:
        command += ["--port", str(port)]
    else:
        port = int(environ["SAGEMAKER_BIND_TO_PORT"])
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=folder)
    server = ServeProcess(process, f"http://127.0.0.1:{port}", tmp, log)
    wait_until_up(server.url, lambda: process.poll() is None, log)
    return server


def wait_until_up(url: str, alive, log: Path | None = None, timeout: float = 180.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"meldctl serve exited:\n{log.read_text() if log else ''}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"meldctl serve did not answer /ping within {timeout} s")


@dataclass
class ThreadServer:
    """uvicorn serving an app in a thread of the test process."""

    server: object
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout=30)


def start_thread_server(app) -> ThreadServer:  # noqa: ANN001
    """Serve `app` (a FastAPI app) with uvicorn on 127.0.0.1 in a daemon thread; wait until /ping answers."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, thread.is_alive, timeout=60)
    return ThreadServer(server, thread, url)


def shared_server(request: pytest.FixtureRequest, trained_run: Path, factory: pytest.TempPathFactory) -> ServeProcess:
    """One `meldctl serve` process for the whole session (whichever module asks first): the sample checkpoint,
    1 MB uploads, batches of up to 8, 2 s for a request's headers, 600 s for a request (videos). The batch wait
    is long (2 s) so that concurrent requests reliably share batches; a lone request never waits for it
    (nothing else is being decoded)."""

    def start() -> ServeProcess:
        args = [str(trained_run / "best.pt"), "--device", "cpu", "--max-upload-mb", "1", "--max-batch", "8",
                "--batch-wait-ms", "2000", "--workers", "2", "--header-timeout", "2", "--timeout", "600"]  # fmt: skip
        return start_serve(args, factory.mktemp("serve"))

    return _shared(request, "serve", start)


def sample_test_clips(trained_run: Path) -> list[Path]:
    """The sample's test clips (14), as `meldctl prepare` wrote them."""
    return sorted((trained_run.parent / "data" / "clips" / "test").glob("*.mp4"))


def post_clip(url: str, clip: Path | None, text: str | None, *, filename: str | None = None, route: str = "/predict"):
    """POST the multipart form a browser or `curl -F clip=@CLIP -F text=TEXT` sends."""
    files = {"clip": (filename or clip.name, clip.read_bytes(), "video/mp4")} if clip is not None else None
    data = {"text": text} if text is not None else None
    return requests.post(url + route, files=files, data=data, timeout=120)


def cli_predict(clip: Path, text: str, ckpt: Path, monkeypatch: pytest.MonkeyPatch):
    """`meldctl predict CLIP --text TEXT --json`, run beside the clip so that it names the clip as the upload does."""
    monkeypatch.chdir(clip.parent)
    from meldctl.cli import app

    args = ["predict", clip.name, "--text", text, "--ckpt", str(ckpt), "--json", "--device", "cpu"]
    return CliRunner().invoke(app, args)


def assert_error(response: requests.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert fragment in body["error"], body["error"]
