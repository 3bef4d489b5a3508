"""One S3 object fetched to a local file with a size limit (a clip named by `clip_s3` in a request)."""

from __future__ import annotations

from pathlib import Path

from meldctl.errors import RemoteError
from meldctl.remote.answers import check_answers
from meldctl.remote.aws import aws_errors
from meldctl.remote.s3 import parse_s3_uri

CHUNK = 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def fetch_limited(uri: str, path: Path, limit: int) -> int:
    """Download `uri` to `path`, stopping once more than `limit` bytes have arrived.

    Returns:
        The bytes written: the object's size, or `limit + 1` when it is larger (the file is then incomplete).

    Raises:
        RemoteError: not an s3:// URI, no credentials, the object does not exist or cannot be read.
    """
    import boto3
    import botocore.exceptions

    bucket, key = parse_s3_uri(uri)
    client = check_answers(boto3.session.Session()).client("s3")
    with aws_errors(f"fetching {uri}"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise RemoteError(f"no object at {uri}") from None
            raise
        if head["ContentLength"] > limit:
            return limit + 1
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        written = 0
        with open(path, "wb") as handle:
            for chunk in body.iter_chunks(CHUNK):
                written += len(chunk)
                if written > limit:  # the object grew since head_object
                    body.close()
                    return limit + 1
                handle.write(chunk)
    return written
