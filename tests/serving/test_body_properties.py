"""Properties of the request-body readers (hypothesis): round trips, never a traceback, never a file outside."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meldctl.serving import jsonbody
from meldctl.serving.forms import FieldSpec, FormSpec, RequestError, read_form, upload_name
from meldctl.serving.jsonbody import Base64Target, BodyError, ListSpec, read_object
from meldctl.serving.s3access import S3Access
from meldctl.serving.uploads import ClipRequest, DialogueRequest, Limits, read_json

PROPERTY = settings(derandomize=True, deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.text(st.characters(codec="utf-8"), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)  # fmt: skip
CHUNKS = st.integers(1, 300)


def _read(body: bytes, folder: Path, chunk: int, limit: int = 10**6) -> tuple[dict, dict]:
    jsonbody.CHUNK = chunk  # small windows exercise every boundary inside tokens, escapes and base64 groups
    try:
        target = Base64Target(folder / "decoded", limit, "over")
        return read_object(io.BytesIO(body).read, {"clip_b64": target}, value_limit=10**6)
    finally:
        jsonbody.CHUNK = 1 << 20


def _only_expected_files(folder: Path) -> None:
    assert {p.name for p in folder.rglob("*")} <= {"decoded"}


@PROPERTY
@given(
    fields=st.dictionaries(KEYS.filter(lambda k: k != "clip_b64"), VALUES, max_size=5),
    blob=st.binary(max_size=600),
    slash_escaped=st.booleans(),
    indent=st.none() | st.integers(0, 3),
    ascii_only=st.booleans(),
    chunk=CHUNKS,
)
def test_json_objects_round_trip(fields, blob, slash_escaped, indent, ascii_only, chunk) -> None:  # noqa: ANN001
    """Whatever a JSON writer produces, the other fields come back as json.loads reads them and the base64 field's
    bytes land in its file, in any chunking."""
    encoded = base64.b64encode(blob).decode()
    text = json.dumps({**fields, "clip_b64": encoded}, indent=indent, ensure_ascii=ascii_only)
    if slash_escaped:  # some writers send "/" as "\/"; only the base64 holds slashes outside other strings' escapes
        text = text.replace(json.dumps(encoded), json.dumps(encoded).replace("/", "\\/"))
    with tempfile.TemporaryDirectory() as tmp:
        got, decoded = _read(text.encode(), Path(tmp), chunk)
        assert got == {**json.loads(text), "clip_b64": ""}
        assert decoded["clip_b64"].size == len(blob) and (Path(tmp) / "decoded").read_bytes() == blob
        _only_expected_files(Path(tmp))


@PROPERTY
@given(body=st.binary(max_size=400) | st.text(max_size=200).map(str.encode), chunk=CHUNKS)
def test_any_bytes_are_read_or_refused_with_one_sentence(body: bytes, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            got, _ = _read(body, Path(tmp), chunk)
        except BodyError as exc:
            assert exc.status in (400, 413) and "\n" not in exc.message
        else:
            assert isinstance(got, dict)
        _only_expected_files(Path(tmp))


@PROPERTY
@given(fields=st.dictionaries(KEYS, VALUES, max_size=4), cut=st.integers(0, 10**6), chunk=CHUNKS)
def test_truncated_json_is_refused(fields: dict, cut: int, chunk: int) -> None:
    text = json.dumps(fields).encode()
    cut = cut % len(text)  # strictly shorter than the whole object
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _read(text[:cut], Path(tmp), chunk)
        except BodyError as exc:
            assert exc.status == 400
        else:
            raise AssertionError(f"{text[:cut]!r} was accepted")


@PROPERTY
@given(data=st.text(st.sampled_from('ABCDabcd0123+/=\\ \n"x'), max_size=40), chunk=CHUNKS)
def test_base64_is_decoded_exactly_as_b64decode_validates(data: str, chunk: int) -> None:
    body = json.dumps({"clip_b64": data}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            expected = base64.b64decode(data, validate=True) if len(data) % 4 == 0 else None
        except ValueError:
            expected = None
        padding = data.find("=")
        if padding >= 0 and data[padding:].strip("="):
            expected = None  # padding in the middle: refused here, whatever b64decode makes of it
        try:
            _, decoded = _read(body, Path(tmp), chunk)
        except BodyError as exc:
            assert expected is None, (data, exc.message)
        else:
            assert expected is not None and (Path(tmp) / "decoded").read_bytes() == expected
            assert decoded["clip_b64"].size == len(expected)


ROW_FIELDS = st.fixed_dictionaries(
    {}, optional={"text": st.text(max_size=20), "speaker": st.none() | st.text(max_size=10), "dialogue": SCALARS}
)


def _read_rows(body: bytes, folder: Path, chunk: int, *, rows: int = 6, total: int = 2000) -> tuple[dict, dict]:
    jsonbody.CHUNK = chunk
    try:
        target = Base64Target(folder / "row", 1000, "clip over")
        lists = {"dialogue": ListSpec({"clip_b64": target}, rows, "too many rows", total, "clips over together")}
        return read_object(io.BytesIO(body).read, {}, value_limit=10**6, lists=lists)
    finally:
        jsonbody.CHUNK = 1 << 20


@PROPERTY
@given(
    rows=st.lists(st.tuples(ROW_FIELDS, st.none() | st.binary(max_size=300)), max_size=6),
    others=st.dictionaries(KEYS.filter(lambda k: k != "dialogue"), VALUES, max_size=3),
    indent=st.none() | st.integers(0, 2),
    chunk=CHUNKS,
)
def test_dialogue_rows_round_trip(rows: list, others: dict, indent: int | None, chunk: int) -> None:
    """A list of rows: each row's other fields as json.loads reads them, each row's base64 clip in a file of its
    own (`row-I`), in any chunking."""
    sent = [{**fields, **({"clip_b64": base64.b64encode(blob).decode()} if blob is not None else {})}
            for fields, blob in rows]  # fmt: skip
    text = json.dumps({**others, "dialogue": sent}, indent=indent)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        got, decoded = _read_rows(text.encode(), folder, chunk)
        expected = [{**fields, **({"clip_b64": ""} if blob is not None else {})} for fields, blob in rows]
        assert got == {**json.loads(text), "dialogue": expected}
        clips = {f"dialogue.{i}.clip_b64": blob for i, (_, blob) in enumerate(rows) if blob is not None}
        assert {key: item.path.read_bytes() for key, item in decoded.items()} == clips
        assert {p.name for p in folder.rglob("*")} == {f"row-{i}" for i, (_, b) in enumerate(rows) if b is not None}


@PROPERTY
@given(sizes=st.lists(st.integers(0, 1000), min_size=1, max_size=9), chunk=CHUNKS)
def test_dialogue_rows_and_clips_are_bounded(sizes: list[int], chunk: int) -> None:
    """More than 6 rows, or clips over 2000 bytes together, are refused (413) as they arrive."""
    body = json.dumps({"dialogue": [{"text": "hi", "clip_b64": base64.b64encode(b"x" * n).decode()} for n in sizes]})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _read_rows(body.encode(), Path(tmp), chunk)
        except BodyError as exc:
            assert exc.status == 413
            too_many = len(sizes) > 6
            over = next(i for i in range(len(sizes) + 1) if i == len(sizes) or sum(sizes[: i + 1]) > 2000)
            expected = "too many rows" if too_many and over >= 6 else "clips over together"
            assert exc.message == expected, (sizes, exc.message)
        else:
            assert len(sizes) <= 6 and sum(sizes) <= 2000


REQUEST_VALUES = VALUES | st.lists(st.dictionaries(st.sampled_from(["text", "speaker", "dialogue", "clip_b64",
                                                                    "clip_name", "x"]), VALUES, max_size=4),
                                   max_size=4)  # fmt: skip


@PROPERTY
@given(
    fields=st.fixed_dictionaries(
        {}, optional={"text": VALUES, "context": REQUEST_VALUES, "no_context": VALUES, "dialogue": REQUEST_VALUES}
    ),
    chunk=CHUNKS,
)
def test_any_context_or_dialogue_fields_are_a_request_or_one_sentence(fields: dict, chunk: int) -> None:
    """Whatever `context`, `no_context` and `dialogue` hold, the server's reader answers a request or a 4xx
    sentence (never an exception a client would see as a 500), and writes nothing outside the folder."""

    async def stream() -> AsyncIterator[bytes]:
        body = json.dumps(fields).encode()
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            read = asyncio.run(read_json(stream(), folder, Limits(clip_bytes=4000, text_bytes=200), S3Access()))
        except RequestError as exc:
            assert 400 <= exc.status < 500 and "\n" not in exc.message
        else:
            assert isinstance(read, ClipRequest | DialogueRequest)
            if isinstance(read, DialogueRequest):
                assert read.rows and all(row.text for row in read.rows)
            else:
                assert sum(len(t.encode()) for _, t in read.context) + len((read.text or "").encode()) <= 200
        assert all(p.parent == folder for p in folder.rglob("*"))


SPEC = FormSpec(
    {
        "clip": FieldSpec(file=True, limit=4000, over="clip over"),
        "notes": FieldSpec(file=True, limit=4000, over="notes over"),
        "text": FieldSpec(file=False, limit=400, over="text over"),
        "segment": FieldSpec(file=False, limit=400, over="segment over"),
    },
    "body over",
)
FILENAMES = st.text(st.characters(codec="utf-8", exclude_characters='"\\\r\n\x00'), max_size=30)
BOUNDARIES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=40)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _form(boundary: str, texts: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    out = b""
    for name, value in texts.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode()
        out += b"\r\n"
    for name, (filename, data) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        out += head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@PROPERTY
@given(
    boundary=BOUNDARIES,
    texts=st.fixed_dictionaries({}, optional={"text": st.text(max_size=100), "segment": st.text(max_size=20)}),
    files=st.fixed_dictionaries(
        {}, optional={"clip": st.tuples(FILENAMES, st.binary(max_size=500)), "notes": st.tuples(FILENAMES, st.binary())}
    ),
    chunk=CHUNKS,
)
def test_multipart_forms_round_trip(boundary: str, texts: dict, files: dict, chunk: int) -> None:
    """Any form of the declared fields: texts as sent, each file's bytes in its own file inside the folder, named
    as `upload_name` reports the file name."""
    delimiter = f"\r\n--{boundary}".encode()
    if any(delimiter in b"\r\n" + data for data in [*(d for _, d in files.values()), *map(str.encode, texts.values())]):
        return  # a part holding its own delimiter cannot be sent in this form
    body = _form(boundary, texts, files)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        form = asyncio.run(read_form(_chunks(body, chunk), boundary, folder, SPEC))
        assert form.texts == texts
        assert form.files.keys() == files.keys()
        for name, (filename, data) in files.items():
            upload = form.files[name]
            assert upload.path.parent == folder and upload.path.read_bytes() == data and upload.size == len(data)
            assert upload.name == upload_name(filename, default=name)
        assert set(folder.rglob("*")) == {u.path for u in form.files.values()}


@PROPERTY
@given(body=st.binary(max_size=400), chunk=CHUNKS, prefix=st.sampled_from([b"", b"--b\r\n", b"--b\r\nContent-"]))
def test_any_multipart_bytes_are_read_or_refused_with_one_sentence(body: bytes, chunk: int, prefix: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            form = asyncio.run(read_form(_chunks(prefix + body, chunk), "b", folder, SPEC))
        except RequestError as exc:
            assert exc.status in (400, 413) and "\n" not in exc.message
        else:
            assert set(form.files) <= {"clip", "notes"} and set(form.texts) <= {"text", "segment"}
        assert all(p.parent == folder and p.name.split(".")[0] in ("clip", "notes") for p in folder.rglob("*"))
