"""`meldctl serve` over real HTTP: a server process on 127.0.0.1 (the `served` fixture) and a real client."""

from __future__ import annotations

import base64
import http.client
import json
import math
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from serve_servers import ServeProcess, ThreadServer, assert_error, cli_predict, post_clip, start_thread_server
from typer.testing import CliRunner

from meldctl import __version__
from meldctl.cli import app

runner = CliRunner()
EMOTIONS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
LONG_TEXT = " ".join(["really"] * 400)  # over the model's max_tokens: the answer carries a warning


def test_ping_and_health(served: ServeProcess, trained_run: Path) -> None:
    ping = requests.get(served.url + "/ping", timeout=10)
    assert ping.status_code == 200 and ping.json() == {"status": "ok"}
    health = requests.get(served.url + "/health", timeout=10).json()
    assert Path(health["checkpoint"]) == trained_run / "best.pt"
    assert health["modalities"] == ["text", "audio", "video"]
    assert health["labels"] == {"emotion": EMOTIONS, "sentiment": ["neutral", "positive", "negative"]}
    assert health["device"] == "cpu" and health["meldctl_version"] == __version__
    assert health["serving"]["max_batch"] == 8 and health["serving"]["max_upload_mb"] == 1


@pytest.mark.parametrize("text", ["Oh my God!", LONG_TEXT], ids=["short", "truncated"])
def test_predict_answers_what_predict_json_prints(
    served: ServeProcess, trained_run: Path, clips: list[Path], monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    printed = cli_predict(clips[0], text, trained_run / "best.pt", monkeypatch)
    assert printed.exit_code == 0, printed.output
    answer = post_clip(served.url, clips[0], text)
    assert answer.status_code == 200, answer.text
    assert answer.json() == json.loads(printed.stdout)
    assert ("warnings" in answer.json()) == (text == LONG_TEXT)


def test_a_clip_without_audio_is_answered_as_predict_answers_it(
    served: ServeProcess, trained_run: Path, clips: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict either answers without the audio (with `missing` and a warning) or refuses: the server does the same."""
    from meldctl.media.ffmpeg import ffmpeg_exe

    silent = tmp_path / "silent.mp4"
    command = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clips[1]), "-an", "-c:v", "copy", str(silent)]
    subprocess.run(command, check=True)
    printed = cli_predict(silent, "Hi there", trained_run / "best.pt", monkeypatch)
    answer = post_clip(served.url, silent, "Hi there")
    if printed.exit_code == 0:
        assert answer.status_code == 200 and answer.json() == json.loads(printed.stdout)
        assert "audio" in answer.json()["missing"]
    else:
        message = next(line for line in printed.stderr.splitlines() if line.startswith("Error:"))
        assert_error(answer, 422, message.removeprefix("Error: silent.mp4: "))
    assert served.leftovers() == []


def test_invocations_take_multipart_json_and_what_endpoint_invoke_sends(
    served: ServeProcess, clips: list[Path]
) -> None:
    from meldctl.protocol import clip_form as invocation_body

    clip, text = clips[2], "We were on a break!"
    expected = post_clip(served.url, clip, text).json()
    assert post_clip(served.url, clip, text, route="/invocations").json() == expected
    payload = {"text": text, "clip_b64": base64.b64encode(clip.read_bytes()).decode(), "clip_name": clip.name}
    assert requests.post(served.url + "/invocations", json=payload, timeout=120).json() == expected
    kind, body = invocation_body(clip, text)
    sent = requests.post(served.url + "/invocations", data=body, headers={"Content-Type": kind}, timeout=120)
    assert sent.status_code == 200 and sent.json() == expected


def _chunked_oversize() -> Iterator[bytes]:
    """A form whose clip streams in without a Content-Length, 1 MB at a time, far over the server's 1 MB."""
    yield b'--b\r\nContent-Disposition: form-data; name="clip"; filename="huge.mp4"\r\n\r\n'
    for _ in range(20):
        yield b"\0" * 2**20
    yield b"\r\n--b--\r\n"


def _multipart(parts: str) -> dict:
    return {
        "data": parts.replace("\n", "\r\n").encode(),
        "headers": {"Content-Type": "multipart/form-data; boundary=b"},
    }


BAD_REQUESTS: dict[str, tuple[Callable[[str, Path], requests.Response], int, str]] = {
    "text file as clip": (
        lambda url, clip: requests.post(url + "/predict", files={"clip": ("notes.txt", b"not a video\n")},
                                        data={"text": "hi"}, timeout=60),
        422, "notes.txt",
    ),
    "no text": (lambda url, clip: post_clip(url, clip, None), 422, "empty text"),
    "no clip": (lambda url, clip: post_clip(url, None, "hi"), 422, "give a clip"),
    "oversize upload": (
        lambda url, clip: requests.post(url + "/predict", files={"clip": ("big.mp4", b"\0" * (3 * 2**20))},
                                        data={"text": "hi"}, timeout=60),
        413, "limit of 1 MB",
    ),
    "oversize chunked upload": (
        lambda url, clip: requests.post(url + "/predict", data=_chunked_oversize(), timeout=60,
                                        headers={"Content-Type": "multipart/form-data; boundary=b"}),
        413, "limit of 1 MB",
    ),
    "unknown route": (lambda url, clip: requests.get(url + "/predictions", timeout=10), 404, "no route GET /predict"),
    "wrong method": (lambda url, clip: requests.get(url + "/predict", timeout=10), 405, "takes POST"),
    "text/plain to /predict": (
        lambda url, clip: requests.post(url + "/predict", data="hi", headers={"Content-Type": "text/plain"},
                                        timeout=10),
        415, "multipart/form-data",
    ),
    "text/plain invocation": (
        lambda url, clip: requests.post(url + "/invocations", data="hi", headers={"Content-Type": "text/plain"},
                                        timeout=10),
        415, "application/json",
    ),
    "malformed JSON": (
        lambda url, clip: requests.post(url + "/invocations", data='{"text": ',
                                        headers={"Content-Type": "application/json"}, timeout=10),
        400, "not valid JSON",
    ),
    "JSON array": (lambda url, clip: requests.post(url + "/invocations", json=[1, 2], timeout=10), 400, "an object"),
    "unknown JSON field": (lambda url, clip: requests.post(url + "/invocations", json={"txt": "hi"}, timeout=10),
                           422, "txt"),
    "text of the wrong type": (lambda url, clip: requests.post(url + "/invocations", json={"text": 3}, timeout=10),
                               422, "text"),
    "bad base64": (
        lambda url, clip: requests.post(url + "/invocations", json={"text": "hi", "clip_b64": "!!"}, timeout=10),
        400, "base64",
    ),
    "clip_s3 that is not s3": (
        lambda url, clip: requests.post(url + "/invocations", json={"text": "hi", "clip_s3": "/etc/passwd"},
                                        timeout=10),
        400, "s3://",
    ),
    "unknown form field": (
        lambda url, clip: requests.post(url + "/predict", files={"video": ("a.mp4", b"x")}, timeout=10),
        400, "unknown form field 'video'",
    ),
    "two clips": (
        lambda url, clip: requests.post(url + "/predict", files=[("clip", ("a.mp4", b"x")), ("clip", ("b.mp4", b"y"))],
                                        timeout=10),
        400, "one clip",
    ),
    "truncated form": (
        lambda url, clip: requests.post(url + "/predict", timeout=10,
                                        **_multipart('--b\nContent-Disposition: form-data; name="text"\n\nhi')),
        400, "closing boundary",
    ),
    "form without boundary": (
        lambda url, clip: requests.post(url + "/predict", data=b"x", timeout=10,
                                        headers={"Content-Type": "multipart/form-data"}),
        400, "no boundary",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_one_line_of_json(served: ServeProcess, clips: list[Path], case: str) -> None:
    send, status, fragment = BAD_REQUESTS[case]
    assert_error(send(served.url, clips[0]), status, fragment)
    assert served.leftovers() == []
    assert "Traceback" not in served.log.read_text()


@pytest.mark.parametrize(
    ("filename", "reported"),
    [("../../escaped.mp4", "escaped.mp4"), ("..\\..\\win.mp4", "win.mp4"), ("/etc/passwd", "passwd"), ("..", "clip")],
)
def test_upload_names_never_become_paths(served: ServeProcess, clips: list[Path], filename: str, reported: str) -> None:
    answer = post_clip(served.url, clips[3], "Hi", filename=filename)
    assert answer.status_code == 200, answer.text
    assert answer.json()["clip"] == reported
    root = served.tmp.parent.parent  # two levels above the server's TMPDIR: where ../../ would point
    assert not [p for p in root.rglob("*") if p.name in ("escaped.mp4", "win.mp4", "passwd")]
    assert served.leftovers() == []


def test_eight_concurrent_clients_are_answered_in_shared_batches(served: ServeProcess, clips: list[Path]) -> None:
    chosen = clips[:8]
    alone = {clip: post_clip(served.url, clip, f"line {i}").json() for i, clip in enumerate(chosen)}
    before = requests.get(served.url + "/health", timeout=10).json()["serving"]["batches"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda item: post_clip(served.url, item[1], f"line {item[0]}"), enumerate(chosen)))
    after = requests.get(served.url + "/health", timeout=10).json()["serving"]["batches"]
    assert [a.status_code for a in answers] == [200] * 8
    for clip, answer in zip(chosen, answers, strict=True):
        together, single = answer.json(), alone[clip]
        assert together["clip"] == clip.name and together["top_emotions"][0][0] == together["top_emotion"]
        for head in ("emotion", "sentiment"):  # a batch pads the texts: equal up to float rounding
            assert all(math.isclose(together[head][k], single[head][k], abs_tol=1e-5) for k in single[head])
    assert after["requests"] - before["requests"] == 8
    assert after["batches"] - before["batches"] < 8, after  # some requests shared a forward
    assert served.leftovers() == []


def test_page_docs_and_schema_need_no_network(served: ServeProcess) -> None:
    external = re.compile(r"""https?://|(?:src|href)\s*=\s*["']?//|url\(|@import""", re.IGNORECASE)
    for route in ("/", "/docs"):
        page = requests.get(served.url + route, timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not external.findall(page.text)  # every byte it needs is in the page
    schema = requests.get(served.url + "/openapi.json", timeout=10).json()
    form = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"clip", "text", "context", "no_context"}
    invocation = schema["paths"]["/invocations"]["post"]["requestBody"]["content"]
    clip_json, video_json = invocation["application/json"]["schema"]["oneOf"]
    assert set(clip_json["properties"]) == {
        "text",
        "clip_b64",
        "clip_s3",
        "clip_name",
        "context",
        "no_context",
        "dialogue",
    }
    # Nested models are written in place: a `#/$defs/...` reference would point nowhere in /openapi.json.
    row = clip_json["properties"]["dialogue"]["anyOf"][0]["items"]
    assert set(row["properties"]) == {"text", "speaker", "dialogue", "clip_b64", "clip_s3", "clip_name"}
    assert "$defs" not in json.dumps(schema)
    predict_json = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert predict_json == clip_json
    assert {"video_s3", "video_b64", "video_path", "subtitles_text", "segment"} <= set(video_json["properties"])
    analyze = schema["paths"]["/analyze"]["post"]["requestBody"]["content"]
    assert set(analyze) == {"multipart/form-data", "application/json"}
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]


@pytest.fixture(scope="module")
def strict_server(trained_run: Path) -> Iterator[ThreadServer]:
    """uvicorn in a thread of this process: a 3 s time limit and one request in progress at a time."""
    from meldctl.inference import Predictor
    from meldctl.serving.app import build_app
    from meldctl.settings import ServeSettings

    predictor = Predictor.from_path(trained_run / "best.pt", "cpu")
    server = start_thread_server(build_app(predictor, ServeSettings(timeout_s=3, max_pending=1, max_upload_mb=1)))
    yield server
    server.stop()


def test_a_stalled_upload_hits_the_time_limit_and_others_are_told_busy(
    strict_server: ThreadServer, clips: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server thread's request folders land here
    host, port = strict_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as stalled:
        head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        stalled.sendall(f"{head}Content-Length: 5000\r\n\r\n--b\r\n".encode())  # then nothing more
        deadline = time.monotonic() + 10
        while requests.get(strict_server.url + "/health", timeout=5).json()["serving"]["inflight"] != 1:
            assert time.monotonic() < deadline, "the stalled request never started"
            time.sleep(0.05)
        busy = post_clip(strict_server.url, clips[0], "hi")
        assert_error(busy, 503, "busy")
        assert busy.headers["retry-after"] == "1"
        reply = http.client.HTTPResponse(stalled)  # the answer to the half-sent request
        reply.begin()
        assert reply.status == 504
        assert json.loads(reply.read()) == {"error": "the request took longer than the server's limit of 3 s"}
    assert not list(tmp_path.glob("meldctl-serve-*"))
    assert post_clip(strict_server.url, clips[0], "hi").status_code == 200  # and the server goes on


@pytest.fixture(scope="module")
def text_server(
    sample_data: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadServer, Path]]:
    """uvicorn in a thread serving a text-only checkpoint (trained here: one epoch, text features only)."""
    from helpers import train_small

    from meldctl.inference import Predictor
    from meldctl.serving.app import build_app
    from meldctl.settings import ServeSettings

    checkpoint = train_small(sample_data, tiny_bert, tmp_path_factory.mktemp("textonly"), modalities="text") / "best.pt"
    server = start_thread_server(build_app(Predictor.from_path(checkpoint, "cpu"), ServeSettings()))
    yield server, checkpoint
    server.stop()


def test_a_text_only_checkpoint_needs_no_clip(text_server: tuple[ThreadServer, Path]) -> None:
    server, checkpoint = text_server
    printed = runner.invoke(app, ["predict", "--text", "Oh my God!", "--ckpt", str(checkpoint), "--json"])
    assert printed.exit_code == 0, printed.output
    expected = json.loads(printed.stdout)
    assert expected["clip"] is None
    form = requests.post(server.url + "/predict", data={"text": "Oh my God!"}, timeout=60)  # curl -d text=...
    assert form.status_code == 200 and form.json() == expected
    multipart = requests.post(server.url + "/predict", files={"text": (None, "Oh my God!")}, timeout=60)
    assert multipart.json() == expected
    assert requests.post(server.url + "/invocations", json={"text": "Oh my God!"}, timeout=60).json() == expected
    assert_error(requests.post(server.url + "/predict", data={"text": " "}, timeout=60), 422, "empty text")
