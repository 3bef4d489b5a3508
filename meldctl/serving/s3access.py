"""Which S3 objects a request may make the server read: only those under the prefixes it was started with.

A server fetches `clip_s3` / `video_s3` / `subtitles_s3` with its own credentials (an endpoint's role), so
without a limit any caller could read, or probe for, any object those credentials reach. `S3Access` refuses
every URI outside `--allow-s3 BUCKET[/PREFIX]` with 403 before anything touches the network; with no prefix
given, the server reads no S3 object at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meldctl.errors import MeldError
from meldctl.serving.forms import RequestError

FetchS3 = Callable[[str, Path, int], int]
"""(s3:// URI, local path, byte limit) -> bytes written, stopping after limit + 1; raises MeldError."""


@dataclass(frozen=True)
class S3Access:
    """The S3 prefixes requests may name, and how an allowed object is fetched.

    Attributes:
        allowed: `BUCKET` (the whole bucket) or `BUCKET/PREFIX` (keys in the folder PREFIX/).
        fetch: The fetcher (None: this server has no S3 client).
    """

    allowed: Sequence[str] = ()
    fetch: FetchS3 | None = None

    def check(self, uri: str, field: str) -> None:
        """Refuse `uri` unless it names an object under an allowed prefix.

        Raises:
            RequestError: 400 when it is not an `s3://BUCKET/KEY` URI with a plain key, 403 when it is outside
                every allowed prefix.
        """
        if not uri.startswith("s3://"):
            raise RequestError(400, f"{field} must be an s3:// URI, not {uri[:100]!r}")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        parts = key.split("/")
        if not bucket or not key or any(part in ("", ".", "..") for part in parts):
            raise RequestError(400, f"{field} must be s3://BUCKET/KEY with a plain key, not {uri[:100]!r}")
        if not self.allowed:
            raise RequestError(
                403, f"this server reads no S3 objects ({field}); it must be started with --allow-s3 BUCKET/PREFIX"
            )
        if not any(_under(bucket, key, entry) for entry in self.allowed):
            raise RequestError(403, f"{field} {uri[:200]} is outside the S3 prefixes this server may read")

    async def fetch_to(self, uri: str, path: Path, limit: int, field: str, over: str) -> int:
        """Check `uri`, then fetch it into `path` in a worker thread; the bytes written.

        Raises:
            RequestError: 400/403 from `check`, 400 when it cannot be fetched, 413 (`over`) above `limit`.
        """
        self.check(uri, field)
        if self.fetch is None:
            raise RequestError(400, f"this server cannot fetch {field} objects")
        try:
            size = await asyncio.to_thread(self.fetch, uri, path, limit)
        except MeldError as exc:
            raise RequestError(400, f"cannot fetch {field}: {exc.message}") from None
        if size > limit:
            raise RequestError(413, over)
        return size


def _under(bucket: str, key: str, entry: str) -> bool:
    allowed_bucket, _, prefix = entry.partition("/")
    prefix = prefix.strip("/")
    return bucket == allowed_bucket and (not prefix or key.startswith(prefix + "/"))
