"""Request bodies: file names, the streaming multipart reader and the JSON reader, fed bytes directly."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meldctl.errors import RemoteError
from meldctl.serving.uploads import (
    ClipRequest,
    Limits,
    RequestError,
    S3Access,
    clip_path,
    read_json,
    read_multipart,
    read_urlencoded,
    upload_name,
)

LIMITS = Limits(clip_bytes=1000, text_bytes=100)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _form(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _multipart(body: bytes, folder: Path, chunk: int = 7, limits: Limits = LIMITS) -> ClipRequest:
    return asyncio.run(read_multipart(_chunks(body, chunk), "XyZ", folder, limits))


@pytest.mark.parametrize(
    ("given", "reported"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\clip.mp4", "clip.mp4"),
        ("..", "clip"),
        ("", "clip"),
        (None, "clip"),
        ("a\x00b\nc.mp4", "abc.mp4"),
        ("x" * 400 + ".mp4", "x" * 255),
    ],
)
def test_upload_names_are_reported_never_used_as_paths(given: str | None, reported: str, tmp_path: Path) -> None:
    assert upload_name(given) == reported
    path = clip_path(tmp_path, upload_name(given))
    assert path.parent == tmp_path and path.name.startswith("clip")


@pytest.mark.parametrize(
    ("name", "file"), [("a.MP4", "clip.mp4"), ("a.tar.gz", "clip.gz"), ("a.mp4;rm -rf", "clip"), ("noext", "clip")]
)
def test_the_clip_keeps_only_a_plain_extension(name: str, file: str, tmp_path: Path) -> None:
    assert clip_path(tmp_path, name) == tmp_path / file


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_multipart_streams_the_clip_to_its_file(chunk: int, tmp_path: Path) -> None:
    video = bytes(range(256)) * 3 + b"\r\n--Xy\r\n--X"  # starts of the boundary that are not one
    got = _multipart(_form(("text", None, "Oh my God! ☕".encode()), ("clip", "../x.mp4", video)), tmp_path, chunk)
    assert got.text == "Oh my God! ☕" and got.name == "x.mp4"
    assert got.clip == tmp_path / "clip.mp4" and got.clip.read_bytes() == video
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_multipart_text_only(tmp_path: Path) -> None:
    assert _multipart(_form(("text", None, b"hi")), tmp_path) == ClipRequest("hi", None, None)


@pytest.mark.parametrize(
    ("parts", "status", "fragment"),
    [
        ((("clip", "a.mp4", b"x" * 1001),), 413, "limit of"),
        ((("text", None, b"y" * 101),), 413, "text field"),
        ((("video", "a.mp4", b"x"),), 400, "unknown form field 'video'"),
        ((("clip", "a.mp4", b"x"), ("clip", "b.mp4", b"y")), 400, "one clip"),
        ((("text", "t.txt", b"hi"),), 400, "plain form field"),
        ((("text", None, b"\xff\xfe"),), 400, "not UTF-8"),
    ],
)
def test_multipart_refusals(parts: tuple, status: int, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(RequestError) as caught:
        _multipart(_form(*parts), tmp_path)
    assert caught.value.status == status and fragment in caught.value.message


def test_multipart_stops_reading_at_the_limit(tmp_path: Path) -> None:
    """A body far over the limit is not read to its end: the reader gives up once past the limit."""
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        yield b'--XyZ\r\nContent-Disposition: form-data; name="clip"; filename="a.mp4"\r\n\r\n'
        while True:
            consumed += 100
            yield b"\0" * 100

    with pytest.raises(RequestError) as caught:
        asyncio.run(read_multipart(endless(), "XyZ", tmp_path, LIMITS))
    assert caught.value.status == 413 and consumed <= 1100


def test_multipart_malformed_or_truncated(tmp_path: Path) -> None:
    for body, fragment in [(b"--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi", "closing boundary"),
                           (b"garbage without a boundary", "malformed")]:  # fmt: skip
        with pytest.raises(RequestError) as caught:
            _multipart(body, tmp_path)
        assert caught.value.status == 400 and fragment in caught.value.message


def test_urlencoded_text(tmp_path: Path) -> None:
    assert asyncio.run(read_urlencoded(_chunks(b"text=Oh+my+God%21", 4), LIMITS)).text == "Oh my God!"
    for body, status in [(b"clip=x.mp4&text=hi", 400), (b"txt=hi", 400), (b"text=" + b"a" * 400, 413)]:
        with pytest.raises(RequestError) as caught:
            asyncio.run(read_urlencoded(_chunks(body, 50), LIMITS))
        assert caught.value.status == status


def _json(payload: object, folder: Path, fetch=None, limits: Limits = LIMITS) -> ClipRequest:  # noqa: ANN001
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return asyncio.run(read_json(_chunks(body, 5), folder, limits, S3Access(("bucket/clips", "b"), fetch)))


def test_json_base64_clip(tmp_path: Path) -> None:
    got = _json({"text": "hi", "clip_b64": base64.b64encode(b"video").decode(), "clip_name": "../a.webm"}, tmp_path)
    assert got.text == "hi" and got.name == "a.webm" and got.clip == tmp_path / "clip.webm"
    assert got.clip.read_bytes() == b"video"
    assert _json({"text": "only text"}, tmp_path) == ClipRequest("only text", None, None)


def test_json_s3_clip_is_fetched_with_the_limit(tmp_path: Path) -> None:
    calls = []

    def fetch(uri: str, path: Path, limit: int) -> int:
        calls.append((uri, path, limit))
        path.write_bytes(b"video")
        return 5

    got = _json({"text": "hi", "clip_s3": "s3://bucket/clips/a.mp4"}, tmp_path, fetch)
    assert calls == [("s3://bucket/clips/a.mp4", tmp_path / "clip.mp4", 1000)]
    assert got.name == "s3://bucket/clips/a.mp4" and got.clip.read_bytes() == b"video"


def _missing(uri: str, path: Path, limit: int) -> int:
    raise RemoteError(f"no object at {uri}")


@pytest.mark.parametrize(
    ("payload", "fetch", "status", "fragment"),
    [
        (b"{not json", None, 400, "not valid JSON"),
        ([1, 2], None, 400, "must be an object"),
        ({"text": 3}, None, 422, "JSON field text"),
        ({"texts": "hi"}, None, 422, "JSON field texts"),
        ({"clip_b64": "***"}, None, 400, "base64"),
        ({"clip_b64": base64.b64encode(b"x" * 1001).decode()}, None, 413, "limit of"),
        ({"clip_b64": "eA==", "clip_s3": "s3://b/k"}, None, 400, "not both"),
        ({"clip_s3": "s3://b/k"}, None, 400, "cannot fetch clip_s3"),
        ({"clip_s3": "file:///etc/passwd"}, lambda *a: 0, 400, "s3:// URI"),
        ({"clip_s3": "s3://b/k"}, lambda *a: 1001, 413, "limit of"),
        ({"clip_s3": "s3://b/k"}, "missing", 400, "no object at s3://b/k"),
        (b"[" * (2 * 2**20), None, 413, "limit"),
    ],
)
def test_json_refusals(payload: object, fetch, status: int, fragment: str, tmp_path: Path) -> None:  # noqa: ANN001
    if fetch == "missing":
        fetch = _missing
    with pytest.raises(RequestError) as caught:
        _json(payload, tmp_path, fetch, Limits(clip_bytes=1000, text_bytes=100))
    assert caught.value.status == status and fragment in caught.value.message
