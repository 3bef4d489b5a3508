"""multipart/form-data bodies streamed into a request's folder: each route declares its fields once (`FormSpec`).

A file field is written to disk as it arrives (`FOLDER/FIELD.EXT`, the extension taken from the uploaded name
when it is plain), a text field is kept in memory up to its limit, and reading stops as soon as either passes
its limit. The uploaded file name is only ever reported back, never used as a path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from meldctl.serving.jsonbody import BodyError

_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")


class RequestError(BodyError):
    """A request the server refuses, with its HTTP status and one sentence for the `error` field."""


@dataclass(frozen=True)
class FieldSpec:
    """One form field: a file or a text, the most bytes it may carry, and the 413 sentence above that."""

    file: bool
    limit: int
    over: str


@dataclass(frozen=True)
class FormSpec:
    """The fields a route's form takes (in the order its error messages name them), and the 413 sentence for a
    body over all of them together."""

    fields: Mapping[str, FieldSpec]
    over: str

    @property
    def total(self) -> int:
        """The most bytes a whole body may carry: every field at its limit, plus room for the boundaries."""
        return sum(spec.limit for spec in self.fields.values()) + FORM_OVERHEAD

    def describe(self) -> str:
        names = [f"{name} (a file)" if spec.file else name for name, spec in self.fields.items()]
        return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]

    def union(self, other: FormSpec) -> FormSpec:
        """Both forms' fields (for a route that takes either); the larger one's sentence."""
        return FormSpec({**self.fields, **other.fields}, max(self, other, key=lambda s: s.total).over)


FORM_OVERHEAD = 1024 * 1024
"""Room for the multipart boundaries and part headers on top of the fields' limits."""


@dataclass
class Upload:
    """A file field written to the request's folder.

    Attributes:
        path: The temporary file.
        name: What the answer calls it: the uploaded file's last path component, printable.
        size: Its bytes.
    """

    path: Path
    name: str
    size: int = 0


@dataclass
class Form:
    """What a form carried: text fields (decoded) and files (on disk)."""

    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)


def megabytes(size: int) -> str:
    """`size` bytes as the refusals name them: `1.5 MB` (MiB, to three decimals at most)."""
    return f"{round(size / 2**20, 3):g} MB"


def over_limit(what: str, size: int, after: str = "") -> str:
    """The 413 sentence for `what` (`the clip is`) over a limit of `size` bytes, `after` appended."""
    return f"{what} over the server's limit of {megabytes(size)}{after}"


def upload_name(filename: str | None, default: str = "clip") -> str:
    """The name an answer reports for an uploaded file: its last path component, printable, at most 255 chars."""
    last = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in last if c.isprintable()).strip()[:255]
    return name if name not in ("", ".", "..") else default


def upload_path(folder: Path, field_name: str, name: str | None) -> Path:
    """Where a file field is written: always `folder/FIELD` plus a plain extension taken from its name."""
    suffix = PurePosixPath(name or "").suffix.lower()
    return folder / (field_name + (suffix if _SUFFIX.fullmatch(suffix) else ""))


async def read_form(stream: AsyncIterator[bytes], boundary: str, folder: Path, spec: FormSpec) -> Form:
    """Parse a multipart/form-data body into `folder`, field by field as `spec` declares them.

    Raises:
        RequestError: 400 for a malformed form, an unknown field or one given twice, 413 over a limit.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser

    sink = _FormSink(folder, spec)
    try:
        parser = MultipartParser(boundary.encode("latin-1"), sink.callbacks())
    except (ValueError, MultipartParseError) as exc:
        raise RequestError(400, f"the multipart boundary is not usable: {exc}") from None
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > spec.total:
                raise RequestError(413, spec.over)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestError(400, f"the multipart body is malformed: {exc}") from None
    finally:
        sink.close()
    if not sink.ended:
        raise RequestError(400, "the multipart body ends before its closing boundary")
    return sink.result()


class _FormSink:
    """Receives python-multipart's callbacks: texts in memory (bounded), files into theirs."""

    def __init__(self, folder: Path, spec: FormSpec) -> None:
        self.folder, self.spec = folder, spec
        self.form = Form()
        self.ended = False
        self._texts: dict[str, bytearray] = {}
        self._headers: dict[str, str] = {}
        self._field, self._value = bytearray(), bytearray()
        self._handle: BinaryIO | None = None
        self._target: str | None = None

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

    def result(self) -> Form:
        for name, raw in self._texts.items():
            try:
                self.form.texts[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(400, f"the {name} field is not UTF-8") from None
        return self.form

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
        name = options.get(b"name", b"").decode("latin-1")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        spec = self.spec.fields.get(name)
        if spec is None:
            raise RequestError(400, f"unknown form field {name[:50]!r}: send {self.spec.describe()}")
        if spec.file:
            if name in self.form.files:
                raise RequestError(400, f"send one {name} per request")
            shown = upload_name(filename, default=name)
            upload = Upload(upload_path(self.folder, name, shown), shown)
            self.form.files[name] = upload
            self._handle = open(upload.path, "xb")  # noqa: SIM115 - closed in _part_end or close()
        else:
            if filename is not None or name in self._texts:
                raise RequestError(400, f"send the {name} once, as a plain form field (not a file)")
            self._texts[name] = bytearray()
        self._target = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target is None:
            return
        spec = self.spec.fields[self._target]
        if spec.file and self._handle is not None:
            upload = self.form.files[self._target]
            upload.size += end - start
            if upload.size > spec.limit:
                raise RequestError(413, spec.over)
            self._handle.write(data[start:end])
        elif not spec.file:
            text = self._texts[self._target]
            text.extend(data[start:end])
            if len(text) > spec.limit:
                raise RequestError(413, spec.over)

    def _part_end(self) -> None:
        self.close()
        self._target = None

    def _end(self) -> None:
        self.ended = True
