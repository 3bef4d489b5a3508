"""The boto3 session and the translation of AWS failures into one-line `RemoteError`s with a hint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from meldctl.errors import RemoteError

CREDENTIALS_HINT = (
    "run `aws configure` (or `aws sso login`), or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
_CREDENTIAL_CODES = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
}


def session(region: str | None = None, *, need_credentials: bool = True) -> Any:
    """A boto3 session for `region` (else the AWS configuration's region).

    Raises:
        RemoteError: no region is configured, or (with `need_credentials`) no credentials are found.
    """
    import boto3
    import botocore.exceptions

    try:
        boto = boto3.Session(region_name=region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise RemoteError(str(exc), hint="check AWS_PROFILE or run `aws configure --profile NAME`") from None
    if not boto.region_name:
        raise RemoteError("no AWS region configured", hint="pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION")
    if need_credentials and boto.get_credentials() is None:
        raise RemoteError("no AWS credentials found", hint=CREDENTIALS_HINT)
    return boto


@contextlib.contextmanager
def aws_errors(action: str, *, instance_type: str | None = None, bucket: str | None = None) -> Iterator[None]:
    """Turn botocore exceptions raised while doing `action` into a `RemoteError` that says what to do."""
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise RemoteError(f"{action}: no AWS credentials found", hint=CREDENTIALS_HINT) from None
    except botocore.exceptions.NoRegionError:
        raise RemoteError(
            f"{action}: no AWS region configured", hint="pass --region or set AWS_DEFAULT_REGION"
        ) from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise RemoteError(
            f"{action}: cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}",
            hint="check the network connection and the region (--region)",
        ) from None
    except botocore.exceptions.ClientError as exc:
        raise explain_client_error(exc, action, instance_type=instance_type, bucket=bucket) from None


def explain_client_error(
    exc: Any, action: str, *, instance_type: str | None = None, bucket: str | None = None
) -> RemoteError:
    """A `RemoteError` for a botocore `ClientError`, with a hint for the failures users meet most."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "Unknown"
    message = str(error.get("Message", "")) or str(exc)
    what = f"{action}: {code}: {message}"
    if code == "ResourceLimitExceeded":
        kind = instance_type or "the instance type"
        return RemoteError(
            what,
            hint=f"ask for more in Service Quotas (Amazon SageMaker, '{kind} for training job usage', "
            f"or '... for spot training job usage' with --spot), or pick another --instance-type; see docs/remote.md",
        )
    if code in _CREDENTIAL_CODES:
        return RemoteError(what, hint=CREDENTIALS_HINT)
    if code in {"AccessDenied", "AccessDeniedException", "403", "Forbidden"}:
        return RemoteError(what, hint="the AWS identity (or the job's --role) lacks a permission; see docs/remote.md")
    if code in {"NoSuchBucket", "404", "NotFound"} and bucket:
        return RemoteError(
            f"{action}: S3 bucket {bucket} does not exist",
            hint=f"create it with `aws s3 mb s3://{bucket}` in the job's region, or pass another --bucket",
        )
    if code == "ValidationException" and "instanceType" in message:
        return RemoteError(what, hint="pick an instance type SageMaker training offers, e.g. ml.g5.xlarge")
    if code == "ValidationException" and "role" in message.lower():
        return RemoteError(what, hint="check --role: an IAM role ARN that trusts sagemaker.amazonaws.com")
    lowered = message.lower()
    not_found = code == "ValidationException" and ("not found" in lowered or "could not find" in lowered)
    if code == "ResourceNotFound" or not_found:
        return RemoteError(what, hint="check the job name with `meldctl logs list` (and the --region)")
    return RemoteError(what)
