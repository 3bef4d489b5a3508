"""S3 transfers that only move what changed.

- `upload_folder` mirrors a local folder to an S3 prefix, skipping every file whose size and ETag (its MD5,
  or the multipart MD5 for large files) already match: a rerun after an interruption or a small change only
  sends the difference.
- `sync_down` brings an S3 prefix home (TensorBoard event files), fetching new files whole and only the new
  tail of files that grew (event files are append-only). Whole files arrive under a temporary name; an
  interrupted append leaves a valid prefix that the next run continues.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from meldctl.errors import RemoteError
from meldctl.io import atomic_path

CHUNK = 64 * 1024 * 1024
"""Multipart threshold and part size of uploads; `local_etag` must use the same to predict the ETag."""


@dataclass
class Transfer:
    """What a sync did: keys or paths moved, skipped as unchanged, bytes moved."""

    source: str
    target: str
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0


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


def local_etag(path: Path, chunk: int = CHUNK) -> str:
    """The ETag S3 gives `path` when uploaded with `CHUNK`-sized parts: MD5, or MD5 of part MD5s plus `-N`."""
    digests = []
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digests.append(hashlib.md5(block, usedforsecurity=False).digest())
    if len(digests) <= 1:
        return (digests[0] if digests else hashlib.md5(b"", usedforsecurity=False).digest()).hex()
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def list_objects(client: Any, uri: str) -> dict[str, dict[str, Any]]:
    """`{relative key: {"size", "etag"}}` of every object under the prefix `uri`."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if relative and not relative.endswith("/"):
                found[relative] = {"size": item["Size"], "etag": str(item.get("ETag", "")).strip('"')}
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


def upload_folder(
    client: Any,
    folder: Path,
    uri: str,
    *,
    exclude: Collection[str] = (),
    on_file: Callable[[str, int], None] | None = None,
) -> Transfer:
    """Upload the files of `folder` under the prefix `uri`, skipping those already there unchanged.

    Args:
        client: A boto3 S3 client.
        folder: The local folder.
        uri: `s3://bucket/prefix`; a file `a/b.txt` becomes `prefix/a/b.txt`.
        exclude: Top-level folder names to leave out (the raw archive, unused media).
        on_file: Called with (relative path, size) before each upload.
    """
    from boto3.s3.transfer import TransferConfig

    bucket, prefix = parse_s3_uri(uri)
    config = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK)
    remote = list_objects(client, uri)
    report = Transfer(source=str(folder), target=uri)
    for relative, path in local_files(folder, exclude):
        size = path.stat().st_size
        there = remote.get(relative)
        if there is not None and there["size"] == size and there["etag"] == local_etag(path):
            report.skipped.append(relative)
            continue
        if on_file is not None:
            on_file(relative, size)
        key = str(PurePosixPath(prefix) / relative) if prefix else relative
        client.upload_file(str(path), bucket, key, Config=config)
        report.moved.append(relative)
        report.bytes += size
    return report


def upload_file(client: Any, path: Path, uri: str) -> Transfer:
    """Upload one file to the key `uri` unless an identical object is already there."""
    from boto3.s3.transfer import TransferConfig

    bucket, key = parse_s3_uri(uri)
    report = Transfer(source=str(path), target=uri)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        unchanged = head["ContentLength"] == path.stat().st_size and head["ETag"].strip('"') == local_etag(path)
    except client.exceptions.ClientError:
        unchanged = False
    if unchanged:
        report.skipped.append(path.name)
        return report
    config = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK)
    client.upload_file(str(path), bucket, key, Config=config)
    report.moved.append(path.name)
    report.bytes += path.stat().st_size
    return report


def sync_down(client: Any, uri: str, dest: Path) -> Transfer:
    """Bring the objects under `uri` into `dest`: new files whole, grown files by their new tail only.

    A local file larger than its object (the object was rewritten) is fetched again whole.

    Raises:
        RemoteError: an object key would land outside `dest`.
    """
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    report = Transfer(source=uri, target=str(dest))
    for relative, info in sorted(list_objects(client, uri).items()):
        if ".." in PurePosixPath(relative).parts:
            raise RemoteError(f"refusing to write {relative!r} outside {dest}")
        local = dest / relative
        have = local.stat().st_size if local.is_file() else None
        size = info["size"]
        if have == size:
            report.skipped.append(relative)
            continue
        key = prefix + relative
        if have is not None and have < size:
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={have}-")["Body"].read()
            with open(local, "ab") as handle:
                handle.write(body)
            report.bytes += len(body)
        else:
            with atomic_path(local) as tmp:
                client.download_file(bucket, key, str(tmp))
            report.bytes += size
        report.moved.append(relative)
    return report


def download_file(client: Any, uri: str, path: Path) -> Path:
    """Download one object to `path` (atomically)."""
    bucket, key = parse_s3_uri(uri)
    with atomic_path(path) as tmp:
        client.download_file(bucket, key, str(tmp))
    return path
