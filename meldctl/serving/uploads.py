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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from meldctl.protocol import CLIP, CLIP_B64, CONTEXT, DIALOGUE, MAX_ROWS, NO_CONTEXT, TEXT
from meldctl.serving.forms import (
    FORM_OVERHEAD,
    FieldSpec,
    Form,
    FormSpec,
    RequestError,
    megabytes,
    over_limit,
    read_form,
    upload_name,
    upload_path,
)
from meldctl.serving.jsonbody import Base64Target, BodyError, Decoded, ListSpec, read_object
from meldctl.serving.s3access import FetchS3, S3Access

__all__ = ["FetchS3", "RequestError", "S3Access", "upload_name"]

TEXT_LIMIT = 64 * 1024
"""The longest utterance text accepted (bytes); the model reads at most `max_tokens` of it anyway."""
JSON_VALUE_LIMIT = 6 * TEXT_LIMIT + 1024
"""The most bytes of a JSON value other than base64: a text at its limit written entirely as \\u escapes."""
SPOOL = ".body.json"


NAME_LIMIT = 200
"""The longest speaker name or dialogue id accepted (characters)."""


@dataclass
class ClipRequest:
    """What a request asks for: the utterance text, and the clip saved in the request's folder.

    Attributes:
        text: The utterance text (None when not sent).
        clip: The temporary file holding the clip, or None.
        name: What the answer calls the clip: the uploaded file's name, `clip_name`, or the S3 URI.
        context: What was said before it, oldest first: (speaker or None, text).
        no_context: Classify it alone, even with a context checkpoint.
    """

    text: str | None
    clip: Path | None
    name: str | None
    context: list[tuple[str | None, str]] = field(default_factory=list)
    no_context: bool = False


@dataclass(frozen=True)
class DialogueRow:
    """One utterance of a conversation request, its clip (if any) saved in the request's folder."""

    text: str
    speaker: str | None
    dialogue: str
    clip: Path | None
    name: str | None


@dataclass
class DialogueRequest:
    """A whole conversation (or several, told apart by `dialogue`), one row per utterance in order."""

    rows: list[DialogueRow]
    no_context: bool = False


@dataclass(frozen=True)
class Limits:
    """Request size limits, in bytes."""

    clip_bytes: int
    text_bytes: int = TEXT_LIMIT
    dialogue_bytes: int = 0
    """The most bytes of a dialogue's clips together (0: as many as one clip)."""
    max_rows: int = MAX_ROWS

    @property
    def json_bytes(self) -> int:
        """The largest JSON body: a dialogue's clips in base64, every text escaped, a name per row."""
        clips = max(self.clip_bytes, self.dialogue_bytes)
        return b64_length(clips) + 6 * self.text_bytes + self.max_rows * 2048 + FORM_OVERHEAD

    @property
    def clip_over(self) -> str:
        return over_limit("the clip is", self.clip_bytes)

    @property
    def text_over(self) -> str:
        return f"the text field is over {self.text_bytes // 1024} KiB"

    @property
    def texts_over(self) -> str:
        return f"the texts of the request are over {self.text_bytes // 1024} KiB together"

    @property
    def rows_over(self) -> str:
        return f"send at most {self.max_rows} rows of dialogue or lines of context in one request"

    @property
    def form(self) -> FormSpec:
        """The form of `/predict`: a clip, its text, its context (a JSON list) and `no_context`."""
        clip = FieldSpec(file=True, limit=self.clip_bytes, over=self.clip_over)
        text = FieldSpec(file=False, limit=self.text_bytes, over=self.text_over)
        context = FieldSpec(file=False, limit=JSON_VALUE_LIMIT, over=self.texts_over)
        flag = FieldSpec(file=False, limit=16, over="no_context is true or false")
        fields = {CLIP: clip, TEXT: text, CONTEXT: context, NO_CONTEXT: flag}
        return FormSpec(fields, over_limit("the upload is", self.clip_bytes))

    @property
    def base64(self) -> dict[str, Base64Target]:
        return {CLIP_B64: Base64Target(Path(), self.clip_bytes, self.clip_over)}

    def lists(self, folder: Path) -> dict[str, ListSpec]:
        """The JSON lists read element by element: a dialogue's rows (their clips decoded into `folder`) and
        the context lines, both at most `max_rows` long."""
        rows = {CLIP_B64: Base64Target(folder / ".row-clip", self.clip_bytes, self.clip_over)}
        return {
            DIALOGUE: ListSpec(rows, self.max_rows, self.rows_over, self.dialogue_total, self.dialogue_over),
            CONTEXT: ListSpec({}, self.max_rows, self.rows_over, 0, self.dialogue_over),
        }

    @property
    def dialogue_total(self) -> int:
        return self.dialogue_bytes or self.clip_bytes

    @property
    def dialogue_over(self) -> str:
        return over_limit("the dialogue's clips are", self.dialogue_total, " together (--max-video-mb)")


def b64_length(size: int) -> int:
    """Characters of `size` bytes in base64."""
    return (size + 2) // 3 * 4


class ContextTurn(BaseModel):
    """A line said before the utterance asked about."""

    model_config = ConfigDict(extra="forbid")

    speaker: str | None = Field(None, max_length=NAME_LIMIT, description="Who said it (only equal names matter).")
    text: str = Field(description="What was said.")


class DialogueRowBody(BaseModel):
    """One utterance of a conversation, as a row of `meldctl predict --dialogue FILE`."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The utterance text (required).")
    speaker: str | None = Field(None, max_length=NAME_LIMIT, description="Who said it.")
    dialogue: str | int | None = Field(
        None, description="The conversation it belongs to: rows are grouped by it (none: all one conversation)."
    )
    clip_b64: str | None = Field(None, description="Its clip's bytes in base64 (none: answered from the text).")
    clip_s3: str | None = Field(None, description="s3://bucket/key of its clip, fetched by the server.")
    clip_name: str | None = Field(None, description="What the answer calls the clip.")


class InvocationRequest(BaseModel):
    """The JSON form of `/predict` and `/invocations`: the text and the clip as base64 or as an S3 URI, with
    optional context; or a whole `dialogue`."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="The utterance text.")
    clip_b64: str | None = Field(None, description="The clip's bytes in base64 (small clips).")
    clip_s3: str | None = Field(None, description="s3://bucket/key of the clip, fetched by the server (large clips).")
    clip_name: str | None = Field(None, description="What the answer calls the clip (default: clip, or the S3 URI).")
    context: list[ContextTurn] | None = Field(
        None, max_length=MAX_ROWS, description="What was said before this utterance, oldest first."
    )
    no_context: bool = Field(False, description="Classify every utterance alone (the context ablation).")
    dialogue: list[DialogueRowBody] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ROWS,
        description="A whole conversation, one row per utterance in order; answered with one object per row. "
        "Goes without text, clip_* and context.",
    )


_TURNS = TypeAdapter(list[ContextTurn])


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
    """Parse a multipart/form-data body with the fields `clip` (a file), `text`, `context` and `no_context`, the clip
    streamed to disk.

    Raises:
        RequestError: 400 for a malformed form or unknown field, 413 for a clip or text over the limits.
    """
    return clip_request(await read_form(stream, boundary, folder, limits.form), limits)


def clip_request(form: Form, limits: Limits) -> ClipRequest:
    """The prediction a form asks for: `context` is the JSON list of `{"speaker", "text"}` lines.

    Raises:
        RequestError: 400 for a context that is not JSON, 413 for texts over the limit or too many lines, 422
            for lines that are not `{"speaker", "text"}` or a `no_context` that is not true or false.
    """
    import json

    clip = form.files.get(CLIP)
    turns: list[ContextTurn] = []
    if form.texts.get(CONTEXT, "").strip():
        try:
            raw = json.loads(form.texts[CONTEXT])
        except (json.JSONDecodeError, RecursionError):
            raise RequestError(400, 'the context field is not JSON: send [{"speaker": "...", "text": "..."}]') from None
        if isinstance(raw, list) and len(raw) > limits.max_rows:
            raise RequestError(413, limits.rows_over)
        try:
            turns = _TURNS.validate_python(raw)
        except ValidationError as exc:
            raise RequestError(422, f"the context field: {_first_error(exc)}") from None
    flag = form.texts.get(NO_CONTEXT, "false").strip().lower()
    if flag not in ("true", "false", "1", "0", ""):
        raise RequestError(422, "no_context is true or false")
    request = ClipRequest(form.texts.get(TEXT), clip.path if clip else None, clip.name if clip else None)
    return with_context(request, turns, flag in ("true", "1"), limits)


def with_context(request: ClipRequest, turns: list[ContextTurn], no_context: bool, limits: Limits) -> ClipRequest:
    """`request` with its context lines, the text limit applying to its text and theirs together."""
    request.context = [(turn.speaker, turn.text) for turn in turns]
    request.no_context = no_context
    texts = [request.text or ""] + [turn.text for turn in turns]
    if sum(len(text.encode("utf-8")) for text in texts) > limits.text_bytes:
        raise RequestError(413, limits.text_over if not turns else limits.texts_over)
    return request


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
    stream: AsyncIterator[bytes],
    folder: Path,
    targets: Mapping[str, Base64Target],
    *,
    limit: int,
    over: str,
    lists: Mapping[str, ListSpec] | None = None,
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
                return read_object(body.read, targets, value_limit=JSON_VALUE_LIMIT, lists=lists)

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
        raise RequestError(422, f"JSON field {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


async def read_json(
    stream: AsyncIterator[bytes], folder: Path, limits: Limits, s3: S3Access
) -> ClipRequest | DialogueRequest:
    """Parse `{"text", "clip_b64" | "clip_s3", "clip_name", "context", "no_context"}` or `{"dialogue": [...]}`;
    the clips are decoded or fetched into `folder`.

    Raises:
        RequestError: 400 for malformed JSON or base64 or an unreadable S3 object, 403 for an S3 object outside
            the allowed prefixes, 413 over the limits, 422 for fields of the wrong type or unknown fields.
    """
    over = f"the JSON body is over the server's limit for a {megabytes(limits.clip_bytes)} clip"
    targets = json_targets(folder, limits.base64)
    fields, decoded = await read_json_body(
        stream, folder, targets, limit=limits.json_bytes, over=over, lists=limits.lists(folder)
    )
    return await clip_from_json(fields, decoded, folder, limits, s3)


async def clip_from_json(
    fields: dict[str, Any], decoded: dict[str, Decoded], folder: Path, limits: Limits, s3: S3Access
) -> ClipRequest | DialogueRequest:
    """The prediction a JSON object asks for (its base64 clips already in `decoded`)."""
    request = validated(InvocationRequest, fields)
    if request.dialogue is not None:
        asked = (request.text, request.clip_b64, request.clip_s3, request.clip_name, request.context)
        if any(value is not None for value in asked):
            raise RequestError(400, "give a dialogue alone: its rows carry their texts and clips")
        return await dialogue_from_json(request, decoded, folder, limits, s3)
    if request.clip_b64 is not None and request.clip_s3 is not None:
        raise RequestError(400, "give clip_b64 or clip_s3, not both")
    clip = ClipRequest(request.text, None, None)
    if CLIP_B64 in decoded:
        name = upload_name(request.clip_name)
        clip = ClipRequest(request.text, decoded[CLIP_B64].path.rename(clip_path(folder, name)), name)
    elif request.clip_s3 is not None:
        path = clip_path(folder, request.clip_s3)
        await s3.fetch_to(request.clip_s3, path, limits.clip_bytes, "clip_s3", limits.clip_over)
        clip = ClipRequest(request.text, path, upload_name(request.clip_name) if request.clip_name else request.clip_s3)
    return with_context(clip, request.context or [], request.no_context, limits)


async def dialogue_from_json(
    request: InvocationRequest, decoded: dict[str, Decoded], folder: Path, limits: Limits, s3: S3Access
) -> DialogueRequest:
    """The rows of a `dialogue` request, each clip in `folder/row-N.EXT` (decoded, or fetched from S3 within what
    is left of the dialogue's total).

    Raises:
        RequestError: 400 for a row with both clip fields, 413 for the texts over the limit together, 422 for a
            row without text; and whatever fetching refuses.
    """
    assert request.dialogue is not None
    if sum(len(row.text.encode("utf-8")) for row in request.dialogue) > limits.text_bytes:
        raise RequestError(413, limits.texts_over)
    total = limits.dialogue_total
    used = sum(item.size for item in decoded.values())
    rows = []
    for index, row in enumerate(request.dialogue):
        where = f"dialogue row {index + 1}"
        if not row.text.strip():
            raise RequestError(422, f"{where} has no text: every row needs the utterance's text")
        if row.clip_b64 is not None and row.clip_s3 is not None:
            raise RequestError(400, f"{where}: give clip_b64 or clip_s3, not both")
        clip, name = None, None
        item = decoded.get(f"{DIALOGUE}.{index}.{CLIP_B64}")
        if item is not None:
            name = upload_name(row.clip_name)
            clip = item.path.rename(upload_path(folder, f"row-{index}", name))
        elif row.clip_s3 is not None:
            clip = upload_path(folder, f"row-{index}", row.clip_s3)
            left = total - used
            over = limits.clip_over if limits.clip_bytes <= left else limits.dialogue_over
            used += await s3.fetch_to(row.clip_s3, clip, min(limits.clip_bytes, left), "clip_s3", over)
            name = upload_name(row.clip_name) if row.clip_name else row.clip_s3
        dialogue = str(row.dialogue).strip() if row.dialogue is not None else ""
        rows.append(DialogueRow(row.text.strip(), (row.speaker or "").strip() or None, dialogue, clip, name))
    return DialogueRequest(rows, request.no_context)
