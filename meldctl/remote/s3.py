"""S3 transfers that only move what changed, and that never write outside their folder.

- `upload_folder` mirrors a local folder to an S3 prefix with `aws s3 sync` semantics: a file is sent when the
  prefix lacks it, when the sizes differ, or when the file was modified after the object was written (local
  mtime newer than the object's LastModified, to the second). Nothing depends on ETags, so multipart uploads and
  SSE-KMS buckets skip unchanged files too. Files go up in parallel through one transfer manager.
- `sync_down` brings an S3 prefix home (TensorBoard event files): new files whole, files that grew by their new
  tail only (event files are append-only). Every key is mapped under the destination by `locate`, which
  refuses absolute keys, `..`, `.`, empty segments and backslashes; a refused key, or one that cannot be
  written here (a name too long, a file where a folder is), is reported with the reason and skipped, the
  others are synced.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from meldctl.errors import RemoteError
from meldctl.io import atomic_path

_KEY_ERRORS = frozenset({errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EILSEQ})
"""Why one key's file cannot be written while others can: its name, or a clash with another key's."""
UPLOAD_WORKERS = 16
"""Files in flight at once: small files are bound by round trips, which parallel requests overlap."""


@dataclass
class Transfer:
    """What a sync did: keys or paths moved, skipped as unchanged, refused as unsafe; bytes moved."""

    source: str
    target: str
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # key: why it was not synced
    bytes: int = 0


@dataclass(frozen=True)
class RemoteObject:
    """An object under a prefix: its size and when it was last written (seconds since the epoch)."""

    size: int
    modified: float


def s3_client(boto_session: Any, workers: int = UPLOAD_WORKERS) -> Any:
    """An S3 client whose connection pool serves `workers` parallel transfers."""
    from botocore.config import Config

    return boto_session.client("s3", config=Config(max_pool_connections=workers + 4))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`).

    Raises:
        RemoteError: not an s3:// URI with a bucket.
    """
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise RemoteError(f"{uri!r} is not an S3 URI", hint="write it as s3://bucket/prefix")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def s3_uri(bucket: str, *parts: str) -> str:
    """`s3://bucket/a/b` from parts, without doubled slashes."""
    key = "/".join(part.strip("/") for part in parts if part and part.strip("/"))
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def local_target(dest: Path, relative: str) -> Path | None:
    """Where the object `relative` (its key below the synced prefix) goes under `dest`; None when unsafe.

    Unsafe: see `locate`.
    """
    return locate(dest, relative)[0]


def locate(dest: Path, relative: str) -> tuple[Path | None, str]:
    """(where the object `relative` goes under `dest`, "") or (None, why it goes nowhere).

    Refused: an empty key, a backslash or NUL (no local path keeps them), an absolute key (`/x`, from a key
    `prefix//x`), a `..` segment or a path that resolves outside `dest` (through a symlink already there), and
    an empty or `.` segment (`a//b`, `a/./b`: inside `dest`, but the same local path as another key).
    """
    if not relative:
        return None, "it names the prefix itself, not a file below it"
    if "\\" in relative or "\0" in relative:
        return None, "its name holds a backslash or a NUL, which a local path cannot keep"
    outside = f"it would land outside {dest}"
    parts = relative.split("/")
    if relative.startswith("/") or ".." in parts:
        return None, outside
    if any(part in ("", ".") for part in parts):
        return None, "its name has an empty or '.' segment, the same local path as the name without it"
    root = dest.resolve()
    target = root.joinpath(*parts).resolve()
    if not target.is_relative_to(root) or target == root:
        return None, outside
    return target, ""


def list_objects(client: Any, uri: str) -> dict[str, RemoteObject]:
    """`{key below the prefix: RemoteObject}` for every object under `uri` (folder markers left out)."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if relative and not relative.endswith("/"):
                found[relative] = RemoteObject(item["Size"], item["LastModified"].timestamp())
    return found


def local_files(folder: Path, exclude: Collection[str] = ()) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of the files to upload: no temporary files, no excluded top folders."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or relative.parts[0] in exclude:
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # an interrupted atomic write (meldctl.io)
        yield relative.as_posix(), path


def unchanged(path: Path, there: RemoteObject | None) -> bool:
    """`aws s3 sync`'s rule: same size, and not modified after the object was written (S3 keeps whole seconds)."""
    if there is None:
        return False
    stat = path.stat()
    return stat.st_size == there.size and int(stat.st_mtime) <= there.modified


def upload_folder(
    client: Any,
    folder: Path,
    uri: str,
    *,
    exclude: Collection[str] = (),
    workers: int = UPLOAD_WORKERS,
    on_progress: Callable[[int, int], None] | None = None,
) -> Transfer:
    """Upload the files of `folder` under the prefix `uri` that are missing or changed there, in parallel.

    Args:
        client: A boto3 S3 client (with a connection pool of at least `workers`).
        folder: The local folder.
        uri: `s3://bucket/prefix`; a file `a/b.txt` becomes `prefix/a/b.txt`.
        exclude: Top-level folder names to leave out (the raw archive, unused media).
        workers: Files in flight at once (1: one at a time).
        on_progress: Called with (files sent, files to send) as each upload completes.
    """
    bucket, prefix = parse_s3_uri(uri)
    remote = list_objects(client, uri)
    report = Transfer(source=str(folder), target=uri)
    wanted = []
    for relative, path in local_files(folder, exclude):
        if unchanged(path, remote.get(relative)):
            report.skipped.append(relative)
        else:
            wanted.append((relative, path, str(PurePosixPath(prefix) / relative) if prefix else relative))
    _upload_all(client, bucket, wanted, workers, report, on_progress)
    return report


def upload_file(client: Any, path: Path, uri: str) -> Transfer:
    """Upload one file to the key `uri` unless it is already there unchanged."""
    import botocore.exceptions

    bucket, key = parse_s3_uri(uri)
    report = Transfer(source=str(path), target=uri)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        there: RemoteObject | None = RemoteObject(head["ContentLength"], head["LastModified"].timestamp())
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        there = None
    if unchanged(path, there):
        report.skipped.append(path.name)
        return report
    _upload_all(client, bucket, [(path.name, path, key)], 1, report, None)
    return report


def _upload_all(
    client: Any,
    bucket: str,
    wanted: list[tuple[str, Path, str]],
    workers: int,
    report: Transfer,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Send (relative, path, key) triples through one transfer manager; the first failure cancels the rest."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    # "classic": the same Python transfer manager everywhere (boto3 may pick the CRT one on some machines).
    config = TransferConfig(
        max_concurrency=max(1, workers), use_threads=workers > 1, preferred_transfer_client="classic"
    )
    with create_transfer_manager(client, config) as manager:
        futures = [(relative, path, manager.upload(str(path), bucket, key)) for relative, path, key in wanted]
        for done, (relative, path, future) in enumerate(futures, 1):
            future.result()
            report.moved.append(relative)
            report.bytes += path.stat().st_size
            if on_progress is not None:
                on_progress(done, len(futures))


def sync_down(client: Any, uri: str, dest: Path) -> Transfer:
    """Bring the objects under `uri` into `dest`: new files whole, grown files by their new tail only.

    A local file larger than its object (the object was rewritten) is fetched again whole. A key that has no
    safe place under `dest` (see `locate`), or that cannot be written here (a name too long for the file
    system, a file where a folder of the same name is, or the other way round) is skipped and listed in
    `refused` with the reason; the other keys are synced.
    """
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    report = Transfer(source=uri, target=str(dest))
    dest.mkdir(parents=True, exist_ok=True)
    for relative, there in sorted(list_objects(client, uri).items()):
        local, why = locate(dest, relative)
        if local is None:
            report.refused[prefix + relative] = why
            continue
        try:
            fetched = _sync_one(client, bucket, prefix + relative, there, local)
        except OSError as exc:
            if exc.errno not in _KEY_ERRORS:
                raise  # the network, a full disk, a read-only folder: every later key would fail too
            report.refused[prefix + relative] = f"it cannot be written here: {_write_problem(exc, dest)}"
            continue
        if fetched is None:
            report.skipped.append(relative)
        else:
            report.moved.append(relative)
            report.bytes += fetched
    return report


def _sync_one(client: Any, bucket: str, key: str, there: RemoteObject, local: Path) -> int | None:
    """Bring one object home: nothing when the sizes match, the new tail when it grew, else all of it.

    Returns:
        The bytes fetched, or None when the local file was complete.
    """
    have = local.stat().st_size if local.is_file() else None
    if have == there.size:
        return None
    if have is not None and have < there.size:
        body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={have}-")["Body"].read()
        with open(local, "ab") as handle:
            handle.write(body)
        return len(body)
    with atomic_path(local) as tmp:
        client.download_file(bucket, key, str(tmp))
    return there.size


def _write_problem(exc: OSError, dest: Path) -> str:
    """Why a key's file cannot be written, in words (the path itself may be hundreds of characters)."""
    if exc.errno == errno.ENAMETOOLONG:
        return "its name is too long for this file system"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return "a file and a folder of the same name (another key is the one, this key the other)"
    return exc.strerror or type(exc).__name__


def object_exists(client: Any, uri: str) -> bool:
    """Whether the object `uri` exists (HeadObject); any answer but "not found" is raised."""
    import botocore.exceptions

    bucket, key = parse_s3_uri(uri)
    try:
        client.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def read_text(client: Any, uri: str) -> str:
    """The object `uri` as text (undecodable bytes replaced): a small answer or report."""
    bucket, key = parse_s3_uri(uri)
    return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")


def download_file(client: Any, uri: str, path: Path) -> Path:
    """Download one object to `path` (atomically)."""
    bucket, key = parse_s3_uri(uri)
    with atomic_path(path) as tmp:
        client.download_file(bucket, key, str(tmp))
    return path
