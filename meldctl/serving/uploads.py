"""Request bodies into a temporary folder: multipart forms streamed to disk, JSON with base64 or an S3 URI.

A clip never sits whole in memory on its way in (except base64 inside JSON, which must be parsed whole and is
therefore bounded by the same limit), reading stops as soon as a body passes the limit, and the uploaded file
name is only ever reported back, never used as a path: the clip is always `FOLDER/clip.EXT`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meldctl.errors import MeldError
from meldctl.protocol import CLIP, FORM_FIELDS, TEXT

FORM_OVERHEAD = 1024 * 1024
"""Room for the multipart boundaries, part headers and the text field on top of the clip limit."""
TEXT_LIMIT = 64 * 1024
"""The longest utterance text accepted (bytes); the model reads at most `max_tokens` of it anyway."""
FIELDS = FORM_FIELDS
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")

FetchS3 = Callable[[str, Path, int], int]
"""(s3:// URI, local path, byte limit) -> bytes written, stopping after limit + 1; raises MeldError."""


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and one sentence for the `error` field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ClipRequest:
    """What a request asks for: the utterance text, and the clip saved in the request's folder.

    Attributes:
        text: The utterance text (None when not sent).
        clip: The temporary file holding the clip, or None.
        name: What the answer calls the clip: the uploaded file's name, `clip_name`, or the S3 URI.
    """

    text: str | None
    clip: Path | None
    name: str | None


@dataclass(frozen=True)
class Limits:
    """Request size limits, in bytes."""

    clip_bytes: int
    text_bytes: int = TEXT_LIMIT

    @property
    def form_bytes(self) -> int:
        return self.clip_bytes + FORM_OVERHEAD

    @property
    def json_bytes(self) -> int:
        return (self.clip_bytes + 2) // 3 * 4 + FORM_OVERHEAD  # base64 makes 4 characters of 3 bytes

    def describe(self) -> str:
        return f"{self.clip_bytes / 2**20:g} MB"


class InvocationRequest(BaseModel):
    """The JSON form of `/invocations`: the text and the clip as base64 or as an S3 URI."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="The utterance text.")
    clip_b64: str | None = Field(None, description="The clip's bytes in base64 (small clips).")
    clip_s3: str | None = Field(None, description="s3://bucket/key of the clip, fetched by the server (large clips).")
    clip_name: str | None = Field(None, description="What the answer calls the clip (default: clip, or the S3 URI).")


def upload_name(filename: str | None) -> str:
    """The name an answer reports for an uploaded file: its last path component, printable, at most 255 chars."""
    last = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in last if c.isprintable()).strip()[:255]
    return name if name not in ("", ".", "..") else "clip"


def clip_path(folder: Path, name: str | None) -> Path:
    """Where a request's clip is written: always `folder/clip` plus a plain extension taken from its name."""
    suffix = PurePosixPath(name or "").suffix.lower()
    return folder / ("clip" + (suffix if _SUFFIX.fullmatch(suffix) else ""))


def content_type(headers: Any) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and its parameters from a Content-Type header."""
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(headers.get("content-type", ""))
    return kind.decode("latin-1"), {k.decode("latin-1"): v.decode("latin-1") for k, v in options.items()}


def check_length(headers: Any, limit: int, what: str) -> None:
    """Refuse a body whose declared Content-Length is over `limit` before reading any of it."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body ({int(declared) / 2**20:.1f} MB) is over {what}")


async def read_multipart(stream: AsyncIterator[bytes], boundary: str, folder: Path, limits: Limits) -> ClipRequest:
    """Parse a multipart/form-data body with the fields `clip` (a file) and `text`, the clip streamed to disk.

    Raises:
        RequestError: 400 for a malformed form or unknown field, 413 for a clip or text over the limits.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser

    sink = _FormSink(folder, limits)
    try:
        parser = MultipartParser(boundary.encode("latin-1"), sink.callbacks())
    except (ValueError, MultipartParseError) as exc:
        raise RequestError(400, f"the multipart boundary is not usable: {exc}") from None
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limits.form_bytes:
                raise RequestError(413, f"the upload is over the server's limit of {limits.describe()}")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestError(400, f"the multipart body is malformed: {exc}") from None
    finally:
        sink.close()
    if not sink.ended:
        raise RequestError(400, "the multipart body ends before its closing boundary")
    return sink.result()


async def read_urlencoded(stream: AsyncIterator[bytes], limits: Limits) -> ClipRequest:
    """Parse `text=...` (what `curl -d text=...` sends): enough for a text-only checkpoint, never a clip.

    Raises:
        RequestError: 400 for a clip or an unknown field, 413 for a text over the limit.
    """
    from urllib.parse import parse_qs

    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limits.text_bytes * 3 + 1024:  # percent-encoding triples a byte at most
            raise RequestError(413, f"the text field is over {limits.text_bytes // 1024} KiB")
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise RequestError(400, "the form is not valid application/x-www-form-urlencoded (UTF-8 text)") from None
    if CLIP in fields:
        raise RequestError(400, "upload the clip as a file: send multipart/form-data (curl -F clip=@CLIP)")
    unknown = sorted(set(fields) - {TEXT})
    if unknown:
        raise RequestError(400, f"unknown form field {unknown[0][:50]!r}: send clip (a file) and text")
    text = fields[TEXT][0] if fields.get(TEXT) else None
    if text is not None and len(text.encode("utf-8")) > limits.text_bytes:
        raise RequestError(413, f"the text field is over {limits.text_bytes // 1024} KiB")
    return ClipRequest(text, None, None)


async def read_json(
    stream: AsyncIterator[bytes], folder: Path, limits: Limits, fetch_s3: FetchS3 | None
) -> ClipRequest:
    """Parse `{"text", "clip_b64" | "clip_s3", "clip_name"}`; the clip is decoded or fetched into `folder`.

    Raises:
        RequestError: 400 for malformed JSON or base64 or an unreadable S3 object, 413 over the limit,
            422 for fields of the wrong type or unknown fields.
    """
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limits.json_bytes:
            raise RequestError(413, f"the JSON body is over the server's limit for a {limits.describe()} clip")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise RequestError(400, 'the JSON body must be an object such as {"text": "...", "clip_b64": "..."}')
    try:
        fields = InvocationRequest.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise RequestError(422, f"JSON field {where}: {error['msg']}") from None
    if fields.clip_b64 is not None and fields.clip_s3 is not None:
        raise RequestError(400, "give clip_b64 or clip_s3, not both")
    if fields.clip_b64 is not None:
        name = upload_name(fields.clip_name)
        return ClipRequest(fields.text, _decode_b64(fields.clip_b64, clip_path(folder, name), limits), name)
    if fields.clip_s3 is not None:
        path = clip_path(folder, fields.clip_s3)
        await _fetch(fields.clip_s3, path, limits, fetch_s3)
        return ClipRequest(fields.text, path, upload_name(fields.clip_name) if fields.clip_name else fields.clip_s3)
    return ClipRequest(fields.text, None, None)


def _decode_b64(value: str, path: Path, limits: Limits) -> Path:
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "clip_b64 is not valid base64") from None
    if len(data) > limits.clip_bytes:
        raise RequestError(413, f"the clip is over the server's limit of {limits.describe()}")
    path.write_bytes(data)
    return path


async def _fetch(uri: str, path: Path, limits: Limits, fetch_s3: FetchS3 | None) -> None:
    if fetch_s3 is None:
        raise RequestError(400, "this server cannot fetch clip_s3 objects; send clip_b64 or a multipart upload")
    if not uri.startswith("s3://"):
        raise RequestError(400, f"clip_s3 must be an s3:// URI, not {uri[:100]!r}")
    try:
        size = await asyncio.to_thread(fetch_s3, uri, path, limits.clip_bytes)
    except MeldError as exc:
        raise RequestError(400, f"cannot fetch clip_s3: {exc.message}") from None
    if size > limits.clip_bytes:
        raise RequestError(413, f"the clip at {uri} is over the server's limit of {limits.describe()}")


class _FormSink:
    """Receives python-multipart's callbacks: the text in memory (bounded), the clip into its file."""

    def __init__(self, folder: Path, limits: Limits) -> None:
        self.folder, self.limits = folder, limits
        self.text: bytearray | None = None
        self.clip: Path | None = None
        self.name: str | None = None
        self.ended = False
        self._headers: dict[str, str] = {}
        self._field, self._value = bytearray(), bytearray()
        self._handle: BinaryIO | None = None
        self._target: str | None = None
        self._clip_size = 0

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def result(self) -> ClipRequest:
        if self.text is None:
            return ClipRequest(None, self.clip, self.name)
        try:
            return ClipRequest(self.text.decode("utf-8"), self.clip, self.name)
        except UnicodeDecodeError:
            raise RequestError(400, "the text field is not UTF-8") from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _part_begin(self) -> None:
        self._headers, self._target = {}, None

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        field = options.get(b"name", b"").decode("latin-1")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        if field == CLIP:
            if self.clip is not None:
                raise RequestError(400, "send one clip per request")
            self.name = upload_name(filename)
            self.clip = clip_path(self.folder, self.name)
            self._handle = open(self.clip, "xb")  # noqa: SIM115 - closed in _part_end or close()
        elif field == TEXT:
            if filename is not None or self.text is not None:
                raise RequestError(400, "send the text once, as a plain form field (not a file)")
            self.text = bytearray()
        else:
            raise RequestError(400, f"unknown form field {field[:50]!r}: send clip (a file) and text")
        self._target = field

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == CLIP and self._handle is not None:
            self._clip_size += end - start
            if self._clip_size > self.limits.clip_bytes:
                raise RequestError(413, f"the clip is over the server's limit of {self.limits.describe()}")
            self._handle.write(data[start:end])
        elif self._target == TEXT and self.text is not None:
            self.text.extend(data[start:end])
            if len(self.text) > self.limits.text_bytes:
                raise RequestError(413, f"the text field is over {self.limits.text_bytes // 1024} KiB")

    def _part_end(self) -> None:
        self.close()
        self._target = None

    def _end(self) -> None:
        self.ended = True
