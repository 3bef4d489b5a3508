"""A prediction request's body into a temporary folder: a multipart form, `text=...`, or JSON.

Nothing large sits whole in memory on its way in: a multipart clip is written to disk as it arrives
(`forms`), a JSON body is spooled to disk and read back in a worker thread whose base64 fields are decoded
straight into their files (`jsonbody`), and a `clip_s3` object is fetched only from the prefixes the server
was given (`s3access`). Reading stops as soon as a body passes its limit; the uploaded file name is only ever
reported back, never used as a path: the clip is always `FOLDER/clip.EXT`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meldctl.protocol import CLIP, CLIP_B64, TEXT
from meldctl.serving.forms import (
    FORM_OVERHEAD,
    FieldSpec,
    Form,
    FormSpec,
    RequestError,
    read_form,
    upload_name,
    upload_path,
)
from meldctl.serving.jsonbody import Base64Target, BodyError, Decoded, read_object
from meldctl.serving.s3access import FetchS3, S3Access

__all__ = ["FetchS3", "RequestError", "S3Access", "upload_name"]

TEXT_LIMIT = 64 * 1024
"""The longest utterance text accepted (bytes); the model reads at most `max_tokens` of it anyway."""
JSON_VALUE_LIMIT = 6 * TEXT_LIMIT + 1024
"""The most bytes of a JSON value other than base64: a text at its limit written entirely as \\u escapes."""
SPOOL = ".body.json"


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
    def json_bytes(self) -> int:
        return b64_length(self.clip_bytes) + FORM_OVERHEAD

    def describe(self) -> str:
        return f"{round(self.clip_bytes / 2**20, 3):g} MB"

    @property
    def clip_over(self) -> str:
        return f"the clip is over the server's limit of {self.describe()}"

    @property
    def text_over(self) -> str:
        return f"the text field is over {self.text_bytes // 1024} KiB"

    @property
    def form(self) -> FormSpec:
        """The form of `/predict`: a clip and its text."""
        clip = FieldSpec(file=True, limit=self.clip_bytes, over=self.clip_over)
        text = FieldSpec(file=False, limit=self.text_bytes, over=self.text_over)
        return FormSpec({CLIP: clip, TEXT: text}, f"the upload is over the server's limit of {self.describe()}")

    @property
    def base64(self) -> dict[str, Base64Target]:
        return {CLIP_B64: Base64Target(Path(), self.clip_bytes, self.clip_over)}


def b64_length(size: int) -> int:
    """Characters of `size` bytes in base64."""
    return (size + 2) // 3 * 4


class InvocationRequest(BaseModel):
    """The JSON form of `/invocations`: the text and the clip as base64 or as an S3 URI."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="The utterance text.")
    clip_b64: str | None = Field(None, description="The clip's bytes in base64 (small clips).")
    clip_s3: str | None = Field(None, description="s3://bucket/key of the clip, fetched by the server (large clips).")
    clip_name: str | None = Field(None, description="What the answer calls the clip (default: clip, or the S3 URI).")


def clip_path(folder: Path, name: str | None) -> Path:
    """Where a request's clip is written: always `folder/clip` plus a plain extension taken from its name."""
    return upload_path(folder, "clip", name)


def content_type(headers: Any) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and its parameters from a Content-Type header."""
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(headers.get("content-type", ""))
    return kind.decode("latin-1"), {k.decode("latin-1"): v.decode("latin-1") for k, v in options.items()}


def check_length(headers: Any, limit: int, over: str) -> None:
    """Refuse (413, `over`) a body whose declared Content-Length is over `limit` before reading any of it."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, over)


async def read_multipart(stream: AsyncIterator[bytes], boundary: str, folder: Path, limits: Limits) -> ClipRequest:
    """Parse a multipart/form-data body with the fields `clip` (a file) and `text`, the clip streamed to disk.

    Raises:
        RequestError: 400 for a malformed form or unknown field, 413 for a clip or text over the limits.
    """
    return clip_request(await read_form(stream, boundary, folder, limits.form))


def clip_request(form: Form) -> ClipRequest:
    """The prediction a form asks for."""
    clip = form.files.get(CLIP)
    return ClipRequest(form.texts.get(TEXT), clip.path if clip else None, clip.name if clip else None)


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
            raise RequestError(413, limits.text_over)
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
        raise RequestError(413, limits.text_over)
    return ClipRequest(text, None, None)


async def read_json_body(
    stream: AsyncIterator[bytes], folder: Path, targets: Mapping[str, Base64Target], *, limit: int, over: str
) -> tuple[dict[str, Any], dict[str, Decoded]]:
    """Spool a JSON body to `folder` (at most `limit` bytes), then read it in a worker thread (`read_object`).

    Raises:
        RequestError: 413 (`over`) for a body over `limit`, and whatever `read_object` refuses.
    """
    spool = folder / SPOOL
    received = 0
    try:
        with open(spool, "xb") as handle:
            async for chunk in stream:
                received += len(chunk)
                if received > limit:
                    raise RequestError(413, over)
                handle.write(chunk)

        def parse() -> tuple[dict[str, Any], dict[str, Decoded]]:
            with open(spool, "rb") as body:
                return read_object(body.read, targets, value_limit=JSON_VALUE_LIMIT)

        return await asyncio.to_thread(parse)
    except RequestError:
        raise
    except BodyError as exc:
        raise RequestError(exc.status, exc.message) from None
    finally:
        spool.unlink(missing_ok=True)


def json_targets(folder: Path, targets: Mapping[str, Base64Target]) -> dict[str, Base64Target]:
    """`targets` written into `folder`, each to a name of its own until the request says what it is called."""
    return {key: Base64Target(folder / f".{key}", t.limit, t.over) for key, t in targets.items()}


def validated(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    """`fields` as `model`, or 422 naming the first field that does not fit."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise RequestError(422, f"JSON field {where}: {error['msg']}") from None


async def read_json(stream: AsyncIterator[bytes], folder: Path, limits: Limits, s3: S3Access) -> ClipRequest:
    """Parse `{"text", "clip_b64" | "clip_s3", "clip_name"}`; the clip is decoded or fetched into `folder`.

    Raises:
        RequestError: 400 for malformed JSON or base64 or an unreadable S3 object, 403 for an S3 object outside
            the allowed prefixes, 413 over the limits, 422 for fields of the wrong type or unknown fields.
    """
    over = f"the JSON body is over the server's limit for a {limits.describe()} clip"
    targets = json_targets(folder, limits.base64)
    fields, decoded = await read_json_body(stream, folder, targets, limit=limits.json_bytes, over=over)
    return await clip_from_json(fields, decoded, folder, limits, s3)


async def clip_from_json(
    fields: dict[str, Any], decoded: dict[str, Decoded], folder: Path, limits: Limits, s3: S3Access
) -> ClipRequest:
    """The prediction a JSON object asks for (its base64 clip already in `decoded`)."""
    request = validated(InvocationRequest, fields)
    if request.text is not None and len(request.text.encode("utf-8")) > limits.text_bytes:
        raise RequestError(413, limits.text_over)
    if request.clip_b64 is not None and request.clip_s3 is not None:
        raise RequestError(400, "give clip_b64 or clip_s3, not both")
    if CLIP_B64 in decoded:
        name = upload_name(request.clip_name)
        return ClipRequest(request.text, decoded[CLIP_B64].path.rename(clip_path(folder, name)), name)
    if request.clip_s3 is not None:
        path = clip_path(folder, request.clip_s3)
        await s3.fetch_to(request.clip_s3, path, limits.clip_bytes, "clip_s3", limits.clip_over)
        return ClipRequest(request.text, path, upload_name(request.clip_name) if request.clip_name else request.clip_s3)
    return ClipRequest(request.text, None, None)
