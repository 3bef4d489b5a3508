"""Issue 19's serve defects 4-9, each against a real `meldctl serve` (or uvicorn in a thread) and a real client."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from serve_servers import ServeProcess, ThreadServer, assert_error, cli_predict, start_serve, start_thread_server

DEEP = 50_000
JSON = {"Content-Type": "application/json"}
ALLOWED = "meld-requests/clips"


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP server that answers 404 to everything and remembers what it was asked: where the S3 endpoint
    and the instance-metadata address of the server under test point."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                recorder.seen.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_HEAD = do_POST = _any  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hardened(trained_run: Path, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`meldctl serve` with batches of 8, 4 decoding threads, 1 s for headers, S3 only under meld-requests/clips/;
    its S3 endpoint and metadata address are the recorder."""
    env = {
        "AWS_ENDPOINT_URL": recorder.url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": recorder.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = [str(trained_run / "best.pt"), "--device", "cpu", "--max-batch", "8", "--batch-wait-ms", "3000",
            "--workers", "4", "--header-timeout", "1", "--allow-s3", ALLOWED, "--allow-s3", "meld-other"]  # fmt: skip
    server = start_serve(args, tmp_path_factory.mktemp("hardened"), env=env)
    yield server
    server.stop()


def _no_traceback(server: ServeProcess) -> None:
    log = server.log.read_text()
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]


@pytest.mark.parametrize(
    "body",
    [
        "[" * DEEP + "]" * DEEP,
        '{"text": ' + "[" * DEEP + "]" * DEEP + "}",
        '{"text": "hi", "extra": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}",
    ],
    ids=["top level", "text", "unknown field"],
)
@pytest.mark.parametrize("route", ["/invocations", "/analyze"])
def test_json_nested_50000_deep_is_400_and_no_traceback(served: ServeProcess, body: str, route: str) -> None:
    answer = requests.post(served.url + route, data=body, headers=JSON, timeout=60)
    assert_error(answer, 400, "JSON")
    _no_traceback(served)
    assert served.leftovers() == []


def test_the_64_kib_text_limit_holds_for_json(served: ServeProcess, clips: list[Path]) -> None:
    clip = base64.b64encode(clips[0].read_bytes()).decode()
    over = requests.post(served.url + "/invocations", json={"text": "a" * 150_000, "clip_b64": clip}, timeout=60)
    assert_error(over, 413, "text field is over 64 KiB")
    # 20,000 words sent as \u00e9 escapes: 140 KB of JSON, 60 KB of text, under the limit.
    under = requests.post(served.url + "/invocations", data=json.dumps({"text": "é " * 20_000, "clip_b64": clip}),
                          headers=JSON, timeout=120)  # fmt: skip
    assert under.status_code == 200, under.text
    assert "text truncated" in under.json()["warnings"][0]
    multipart = requests.post(served.url + "/predict", files={"clip": ("a.mp4", clips[0].read_bytes())},
                              data={"text": "a" * 150_000}, timeout=60)  # fmt: skip
    assert_error(multipart, 413, "text field is over 64 KiB")  # as it always was for the form


@pytest.fixture(scope="module")
def thread_server(trained_run: Path) -> Iterator[ThreadServer]:
    """uvicorn in a thread of this process, so that a test can watch (and hold) the server's own code."""
    from meldctl.inference import Predictor
    from meldctl.serving.app import build_app
    from meldctl.settings import ServeSettings

    server = start_thread_server(build_app(Predictor.from_path(trained_run / "best.pt", "cpu"), ServeSettings()))
    yield server
    server.stop()


def test_clip_b64_is_decoded_off_the_event_loop(
    thread_server: ThreadServer, clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a clip_b64 is being decoded (held here until /ping has answered), the server answers /ping: the
    decoding runs in a worker thread, not on the thread running the event loop."""
    from meldctl.serving import jsonbody

    decoding, release, threads = threading.Event(), threading.Event(), []
    real = jsonbody._decode_into

    def held(*args: object) -> object:
        threads.append(threading.current_thread())
        decoding.set()
        assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(jsonbody, "_decode_into", held)
    payload = {"text": "Oh my God!", "clip_b64": base64.b64encode(clips[1].read_bytes()).decode(), "clip_name": "a.mp4"}
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(requests.post, thread_server.url + "/invocations", json=payload, timeout=120)
        assert decoding.wait(60), "the decoding never started"
        ping = requests.get(thread_server.url + "/ping", timeout=30)  # the loop is free while the decoding waits
        release.set()
        answer = sent.result()
    assert ping.status_code == 200
    assert answer.status_code == 200 and answer.json()["clip"] == "a.mp4"
    assert threads[0] is not thread_server.thread and threads[0] is not threading.main_thread()


@pytest.mark.parametrize(
    ("payload", "route", "status", "fragment"),
    [
        ({"text": "hi", "clip_s3": "s3://another-bucket/clips/a.mp4"}, "/invocations", 403, "outside the S3 prefixes"),
        ({"text": "hi", "clip_s3": "s3://meld-requests/secret/a.mp4"}, "/invocations", 403, "outside"),
        ({"text": "hi", "clip_s3": "s3://meld-requests/clipsX/a.mp4"}, "/invocations", 403, "outside"),
        ({"text": "hi", "clip_s3": "s3://meld-requests/clips/../secret.mp4"}, "/invocations", 400, "plain key"),
        ({"text": "hi", "clip_s3": "s3://meld-requests/clips//a.mp4"}, "/invocations", 400, "plain key"),
        ({"video_s3": "s3://another-bucket/ep.mp4"}, "/analyze", 403, "video_s3"),
        ({"video_path": "s3://another-bucket/ep.mp4"}, "/invocations", 403, "video_path"),
        ({"video_path": "/etc/passwd"}, "/invocations", 400, "s3:// URI"),
    ],
)
def test_s3_objects_outside_allow_s3_are_refused_before_any_network_call(
    hardened: ServeProcess, recorder: Recorder, payload: dict, route: str, status: int, fragment: str
) -> None:
    before = len(recorder.seen)
    assert_error(requests.post(hardened.url + route, json=payload, timeout=60), status, fragment)
    assert recorder.seen[before:] == []  # neither S3 nor the instance-metadata address was asked anything


def test_allowed_s3_objects_are_fetched(hardened: ServeProcess, recorder: Recorder) -> None:
    """The other side of the refusals: under an allowed prefix the server does ask S3 (here: no such object)."""
    before = len(recorder.seen)
    for uri in (f"s3://{ALLOWED}/a.mp4", "s3://meld-other/any/where.mp4"):
        answer = requests.post(hardened.url + "/invocations", json={"text": "hi", "clip_s3": uri}, timeout=60)
        assert_error(answer, 400, f"no object at {uri}")
    assert any("/meld-requests/clips/a.mp4" in line for line in recorder.seen[before:]), recorder.seen


def test_a_server_without_allow_s3_reads_no_s3_object(served: ServeProcess) -> None:
    answer = requests.post(served.url + "/invocations", json={"text": "hi", "clip_s3": "s3://b/k.mp4"}, timeout=60)
    assert_error(answer, 403, "--allow-s3")


def _host_port(server: ServeProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def test_headers_that_never_finish_are_closed(hardened: ServeProcess) -> None:
    """100 connections that stop in the middle of a header line, and one that sends nothing, are all closed
    by the server (with a 408 where a request had begun); the server goes on answering."""
    address = _host_port(hardened)
    half = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-da"
    stalled = [socket.create_connection(address, timeout=60) for _ in range(100)]
    idle = socket.create_connection(address, timeout=60)
    try:
        for connection in stalled:
            connection.sendall(half)
        for connection in stalled:
            received = b""
            while chunk := connection.recv(4096):  # until the server closes it (a timeout here fails the test)
                received += chunk
            assert received.startswith(b"HTTP/1.1 408 "), received[:200]
            assert json.loads(received.split(b"\r\n\r\n", 1)[1]) == {
                "error": "the request headers did not arrive within 1 s"
            }
        assert idle.recv(4096) == b""
    finally:
        for connection in [*stalled, idle]:
            connection.close()
    assert requests.get(hardened.url + "/ping", timeout=10).status_code == 200
    _no_traceback(hardened)


def test_headers_sent_in_pieces_within_the_limit_are_served(hardened: ServeProcess) -> None:
    with socket.create_connection(_host_port(hardened), timeout=60) as connection:
        for piece in (b"GET /ping HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            connection.sendall(piece)
        assert connection.recv(4096).startswith(b"HTTP/1.1 200 ")


TEXTS = [" ".join(["really"] * n) + " great" for n in (1, 150, 3, 90, 12, 140, 40, 7)]


def test_max_batch_8_answers_equal_predict_json_to_1e_6(
    hardened: ServeProcess, trained_run: Path, clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight clients at once, texts of 2 to 151 words (batches pad them, and four threads tokenise them while the
    model thread tokenises a batch): every answer is `predict --json`'s up to 1e-6 in each probability."""
    chosen = clips[:8]
    before = requests.get(hardened.url + "/health", timeout=10).json()["serving"]["batches"]
    with ThreadPoolExecutor(8) as pool:
        sent = [
            pool.submit(
                requests.post,
                hardened.url + "/predict",
                files={"clip": (clip.name, clip.read_bytes())},
                data={"text": text},
                timeout=120,
            )  # fmt: skip
            for clip, text in zip(chosen, TEXTS, strict=True)
        ]
        answers = [future.result() for future in sent]
    after = requests.get(hardened.url + "/health", timeout=10).json()["serving"]["batches"]
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert after["batches"] - before["batches"] < 8 and after["largest"] > 1, after  # they did share forwards
    for clip, text, answer in zip(chosen, TEXTS, answers, strict=True):
        printed = cli_predict(clip, text, trained_run / "best.pt", monkeypatch)
        assert printed.exit_code == 0, printed.output
        expected, got = json.loads(printed.stdout), answer.json()
        for head in ("emotion", "sentiment"):
            assert got[head].keys() == expected[head].keys()
            assert max(abs(got[head][k] - expected[head][k]) for k in expected[head]) <= 1e-6
        for key in ("clip", "text", "top_emotion", "top_sentiment", "warnings", "missing"):
            assert got.get(key) == expected.get(key)
        assert [label for label, _ in got["top_emotions"]] == [label for label, _ in expected["top_emotions"]]
    _no_traceback(hardened)
