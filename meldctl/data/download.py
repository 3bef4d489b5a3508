"""Download one large file over HTTP: resume with Range requests, retry with backoff, verify.

The MELD host is known to reset connections mid-download; a `.part` file keeps what arrived, and every
retry asks only for the rest. The finished file is renamed into place only after it is verified, so a file
at the destination is always complete.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meldctl.errors import DataError
from meldctl.io import check_free_space

ByteProgress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) as a download advances."""

CHUNK = 1 << 20
_TRANSIENT = (
    ConnectionError,
    TimeoutError,
    socket.timeout,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
    urllib.error.URLError,
)


@dataclass(frozen=True)
class DownloadResult:
    """A verified download."""

    path: Path
    size: int
    resumed_from: int  # bytes already on disk before this call (0: a fresh download)
    downloaded: bool  # False: the file was already complete


def range_header(offset: int) -> dict[str, str]:
    """Request headers asking for the bytes from `offset` on (none for a fresh start)."""
    return {"Range": f"bytes={offset}-"} if offset > 0 else {}


def total_size(status: int, headers: http.client.HTTPMessage | dict[str, str], offset: int) -> int | None:
    """The full file size from a response's headers, or None when the server does not say."""
    content_range = headers.get("Content-Range")
    if status == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (offset if status == 206 else 0)
    return None


def _unreachable(url: str, exc: BaseException, hint: str | None) -> DataError:
    return DataError(
        f"cannot reach {url} ({exc}); are you offline?",
        hint=hint or "download MELD.Raw.tar.gz elsewhere and run: meldctl prepare --source PATH (or --mirror URL)",
    )


def _is_offline(exc: BaseException) -> bool:
    # No DNS answer, or nothing listening: retrying with backoff would only delay the same answer.
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, socket.gaierror | ConnectionRefusedError)


def _fetch_once(url: str, part: Path, progress: ByteProgress | None, timeout_s: float, hint: str | None) -> int | None:
    """Append the rest of `url` to `part`; returns the total size (None: unknown). Raises on a cut."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "meldctl", **range_header(offset)})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:  # nothing left to send: the part file is already whole
            return offset
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}", hint=hint) from None
    with response:
        if response.status != 206:
            offset = 0  # the server ignored Range: start over rather than append a second copy
        total = total_size(response.status, response.headers, offset)
        if total is not None:
            check_free_space(part.parent, total - offset, f"the rest of {part.name.removesuffix('.part')}")
        with part.open("ab" if offset else "wb") as out:
            done = offset
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise http.client.IncompleteRead(b"", total - done)
    return total


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(part: Path, url: str, total: int | None, sha256: str | None, hint: str | None) -> None:
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(f"{url}: got {size} bytes, the server announced {total}", hint="run the same command again")
    if sha256 and sha256_of(part).lower() != sha256.lower():
        part.unlink()  # nothing of a file that is not the one expected is kept
        raise DataError(
            f"{url}: SHA-256 does not match {sha256}", hint=hint or "check --sha256, or try another --mirror"
        )


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    retries: int = 6,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: ByteProgress | None = None,
    hint: str | None = None,
) -> DownloadResult:
    """Download `url` to `dest`, resuming `dest.part` if an earlier attempt left one.

    Args:
        url: http(s) address.
        dest: Final path; written only once the file is complete and verified.
        sha256: Expected hex digest (optional).
        retries: Attempts in a row without progress before giving up; a retry that gains bytes resets it.
        backoff_s: First wait between attempts; doubles each time.
        timeout_s: Socket timeout of one attempt.
        progress: Called as bytes arrive.
        hint: What to tell the user when the file cannot be had from `url` (offline, an HTTP error, a checksum
            mismatch, repeated failures); the default names the MELD archive's options.

    Raises:
        DataError: offline, an HTTP error, a size or checksum mismatch, or too many failed attempts.
    """
    dest = Path(dest)
    if dest.is_file():
        return DownloadResult(dest, dest.stat().st_size, dest.stat().st_size, downloaded=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    failures, last_error = 0, None
    while failures < retries:
        before = part.stat().st_size if part.exists() else 0
        try:
            total = _fetch_once(url, part, progress, timeout_s, hint)
        except _TRANSIENT as exc:
            if _is_offline(exc) and before == 0:
                raise _unreachable(url, exc, hint) from None
            gained = (part.stat().st_size if part.exists() else 0) > before
            failures, last_error = (0 if gained else failures) + 1, exc
            time.sleep(backoff_s * 2 ** (failures - 1))
            continue
        _verify(part, url, total, sha256, hint)
        part.replace(dest)
        return DownloadResult(dest, dest.stat().st_size, resumed_from, downloaded=True)
    raise DataError(
        f"{url}: download failed {retries} times in a row ({last_error})",
        hint=hint or "run the same command again to resume, or use --mirror URL / --source PATH",
    )
