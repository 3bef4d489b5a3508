"""A JSON request body read as a stream: base64 fields decoded straight into files, everything else bounded.

A clip or a video in base64 can be most of a 100 MB body. `json.loads` would hold the body, the string and the
decoded bytes at once, and (on the event loop) stop every other request while it works. `read_object` reads the
top-level object from a file-like source a chunk at a time: the values of the named base64 fields are decoded as
they are read into their files, and every other value (small: texts, names, URIs) is cut out by a scanner that
counts brackets without recursion and only then handed to `json.loads`, so no value can be deep enough or large
enough to hurt. It is plain blocking code: the server runs it in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

CHUNK = 1 << 20
_WHITESPACE = b" \t\r\n"
_STRING_END = re.compile(rb'["\\]')
_ALPHABET = re.compile(rb"[A-Za-z0-9+/=]*")


class BodyError(Exception):
    """A body that cannot be read: its HTTP status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Base64Target:
    """Where a base64 field's bytes go, and how many may arrive.

    Attributes:
        path: The file the decoded bytes are written to.
        limit: The most decoded bytes (413 `over` above).
        over: The 413 sentence for more.
    """

    path: Path
    limit: int
    over: str


class Decoded(NamedTuple):
    """A base64 field written to its file (`path`), `size` bytes once decoded."""

    path: Path
    size: int


@dataclass(frozen=True)
class ListSpec:
    """A field holding a list of objects (a dialogue's rows), read one element at a time: the base64 fields of
    element `i` go to `target.path` plus `-i`, each within its own limit and all of them within `total`.

    Attributes:
        targets: Each element's base64 fields.
        max_items: The most elements (413 `too_many` above).
        too_many: The 413 sentence for a longer list.
        total: The most decoded bytes of all elements together (413 `total_over` above).
        total_over: The 413 sentence for that.
    """

    targets: Mapping[str, Base64Target]
    max_items: int
    too_many: str
    total: int
    total_over: str


def read_object(
    read: Callable[[int], bytes],
    targets: Mapping[str, Base64Target],
    *,
    value_limit: int,
    lists: Mapping[str, ListSpec] | None = None,
) -> tuple[dict[str, Any], dict[str, Decoded]]:
    """Read one JSON object from `read`; string values of the fields in `targets` are base64-decoded to files.

    Args:
        read: A file's `read` (returns b"" at the end).
        targets: The base64 fields and where each one goes.
        value_limit: The most bytes (as sent, escapes included) of any other value.
        lists: Fields holding lists of objects whose own base64 fields are decoded to files (`ListSpec`);
            element `i`'s field `f` of list `key` is `decoded["key.i.f"]`.

    Returns:
        The other fields by name (a decoded field maps to ""), and the decoded fields.

    Raises:
        BodyError: 400 for malformed JSON, invalid base64, a key given twice or nesting too deep; 413 for a
            value over its limit or a list over its length.
    """
    scanner = _Scanner(read)
    if scanner.next_nonspace() != ord("{"):
        if scanner.next_nonspace() is None:
            raise BodyError(400, "the body is not valid JSON (it is empty)")
        raise BodyError(400, 'the JSON body must be an object such as {"text": "..."}')
    decoded: dict[str, Decoded] = {}
    fields = _read_fields(scanner, targets, value_limit, lists or {}, decoded, "")
    if scanner.next_nonspace() is not None:
        raise scanner.malformed("extra data after the object")
    return fields, decoded


def _read_fields(
    scanner: _Scanner,
    targets: Mapping[str, Base64Target],
    value_limit: int,
    lists: Mapping[str, ListSpec],
    decoded: dict[str, Decoded],
    prefix: str,
) -> dict[str, Any]:
    """The object at the scanner (its `{` next), base64 fields into `decoded` under `prefix` + their name."""
    scanner.advance(1)
    fields: dict[str, Any] = {}
    if scanner.next_nonspace() == ord("}"):
        scanner.advance(1)
        return fields
    while True:
        key = scanner.key()
        if key in fields:
            raise BodyError(400, f"the JSON field {key[:50]!r} is given twice")
        scanner.expect(b":")
        target, listed = targets.get(key), lists.get(key)
        if target is not None and scanner.next_nonspace() == ord('"'):
            scanner.advance(1)
            decoded[prefix + key] = _decode_into(scanner, key, target)
            fields[key] = ""
        elif listed is not None and scanner.next_nonspace() == ord("["):
            fields[key] = _read_list(scanner, key, listed, value_limit, decoded)
        else:
            fields[key] = scanner.value(key, value_limit)
        separator = scanner.next_nonspace()
        scanner.advance(1)
        if separator == ord("}"):
            return fields
        if separator != ord(","):
            raise scanner.malformed("expected ',' or '}' after a value")


def _read_list(scanner: _Scanner, key: str, spec: ListSpec, value_limit: int, decoded: dict[str, Decoded]) -> list[Any]:
    """The list at the scanner (its `[` next): objects read by `_read_fields`, anything else as a plain value."""
    scanner.advance(1)
    items: list[Any] = []
    if scanner.next_nonspace() == ord("]"):
        scanner.advance(1)
        return items
    used = 0
    while True:
        if len(items) >= spec.max_items:
            raise BodyError(413, spec.too_many)
        if scanner.next_nonspace() == ord("{"):
            targets = {}
            for name, target in spec.targets.items():
                # Each element's bytes count against the list's total: the tighter of the two limits applies.
                left = spec.total - used
                limit, over = (target.limit, target.over) if target.limit <= left else (left, spec.total_over)
                targets[name] = Base64Target(target.path.with_name(f"{target.path.name}-{len(items)}"), limit, over)
            prefix = f"{key}.{len(items)}."
            items.append(_read_fields(scanner, targets, value_limit, {}, decoded, prefix))
            used += sum(d.size for name, d in decoded.items() if name.startswith(prefix))
        else:
            items.append(scanner.value(key, value_limit))
        separator = scanner.next_nonspace()
        scanner.advance(1)
        if separator == ord("]"):
            return items
        if separator != ord(","):
            raise scanner.malformed(f"expected ',' or ']' in {key[:50]!r}")


class _Scanner:
    """A window onto the body: `buf[pos:]` is what has been read and not yet consumed."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.buf = bytearray()
        self.pos = 0
        self.consumed = 0  # bytes dropped from the front of buf: positions in messages count from the body's start
        self.eof = False

    def fill(self) -> bool:
        """Read one more chunk onto the end of the window; False at the end of the body."""
        if self.eof:
            return False
        chunk = self._read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        if self.pos > CHUNK:  # drop what was consumed, keeping the window small
            del self.buf[: self.pos]
            self.consumed += self.pos
            self.pos = 0
        self.buf += chunk
        return True

    def advance(self, count: int) -> None:
        self.pos += count

    def next_nonspace(self) -> int | None:
        """The next byte that is not whitespace (not consumed), or None at the end of the body."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return None

    def expect(self, token: bytes) -> None:
        if self.next_nonspace() != token[0]:
            raise self.malformed(f"expected {token.decode()!r}")
        self.pos += 1

    def malformed(self, what: str) -> BodyError:
        return BodyError(400, f"the body is not valid JSON ({what} at byte {self.consumed + self.pos})")

    def key(self) -> str:
        if self.next_nonspace() != ord('"'):
            raise self.malformed("expected a field name in double quotes")
        key = self._parse(self._raw(1024, "a field name"), "a field name")
        assert isinstance(key, str)
        return key

    def value(self, key: str, limit: int) -> Any:
        if self.next_nonspace() is None:
            raise self.malformed("the body ends before a value")
        return self._parse(self._raw(limit, f"the JSON field {key[:50]!r}"), f"the field {key[:50]!r}")

    def _parse(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw)
        except RecursionError:
            raise BodyError(400, f"the body is not valid JSON ({what} is nested too deep)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise BodyError(400, f"the body is not valid JSON ({what}: {detail})") from None

    def _raw(self, limit: int, what: str) -> bytes:
        """The bytes of one value starting at `pos`, found by counting brackets and skipping strings."""
        start, index, depth, in_string = self.pos, self.pos, 0, False
        while True:
            if index - start > limit:
                raise BodyError(413, f"{what} is over the server's limit of {limit // 1024} KiB")
            if index >= len(self.buf):
                before = self.pos  # == start: fill() may drop the consumed bytes before it
                if not self.fill():
                    break
                start, index = start + self.pos - before, index + self.pos - before
                continue
            byte = self.buf[index]
            if in_string:
                found = _STRING_END.search(self.buf, index)
                if found is None:
                    index = len(self.buf)
                elif self.buf[found.start()] == ord("\\"):
                    index = found.start() + 2
                else:
                    in_string, index = False, found.start() + 1
                    if depth == 0:
                        break
            elif byte == ord('"'):
                in_string, index = True, index + 1
            elif byte in b"[{":
                depth, index = depth + 1, index + 1
            elif byte in b"]}":
                if depth == 0:
                    break
                depth, index = depth - 1, index + 1
                if depth == 0:
                    break
            elif depth == 0 and (byte == ord(",") or byte in _WHITESPACE):
                break
            else:
                index += 1
        index = min(index, len(self.buf))
        self.pos = index
        return bytes(self.buf[start:index])


def _decode_into(scanner: _Scanner, key: str, target: Base64Target) -> Decoded:
    """Decode a base64 string value (its opening quote consumed) into `target.path`, 4 characters at a time."""
    invalid = BodyError(400, f"{key} is not valid base64")
    pending = bytearray()
    size, padded = 0, False
    with open(target.path, "wb") as handle:
        while True:
            found = _STRING_END.search(scanner.buf, scanner.pos)
            end = found.start() if found is not None else len(scanner.buf)
            text = bytes(scanner.buf[scanner.pos : end])
            scanner.pos = end
            if text:
                if not _ALPHABET.fullmatch(text):
                    raise invalid
                padding = text.find(b"=")
                if (padded and padding != 0) or (padding >= 0 and text[padding:].strip(b"=")):
                    raise invalid  # padding only at the very end
                padded = padded or padding >= 0
                pending += text
                whole = len(pending) // 4 * 4
                if whole:
                    try:
                        data = base64.b64decode(bytes(pending[:whole]), validate=True)
                    except (binascii.Error, ValueError):
                        raise invalid from None
                    del pending[:whole]
                    size += len(data)
                    if size > target.limit:
                        raise BodyError(413, target.over)
                    handle.write(data)
            if found is None:
                if not scanner.fill():
                    raise scanner.malformed(f"the body ends inside {key}")
                continue
            if scanner.buf[scanner.pos] == ord('"'):
                scanner.pos += 1
                break
            # An escape: JSON lets a writer send "/" as "\/"; nothing else belongs in base64.
            while len(scanner.buf) < scanner.pos + 2 and scanner.fill():
                pass
            if scanner.buf[scanner.pos + 1 : scanner.pos + 2] != b"/" or padded:
                raise invalid
            pending += b"/"
            scanner.pos += 2
    if pending:
        raise invalid  # not a multiple of 4 characters: truncated or unpadded
    return Decoded(target.path, size)
