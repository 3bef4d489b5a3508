"""The boto3 session, the bucket checks, and the one boundary where AWS failures become `RemoteError`s.

Every public function of `meldctl.remote` that talks to AWS runs inside `aws_errors` (or `aws_boundary`), which
turns any botocore, boto3, s3transfer or tarfile exception into one line that says what failed and what to do.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from meldctl.errors import MeldError, RemoteError

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
_MESSAGE_LIMIT = 300
F = TypeVar("F", bound=Callable[..., Any])


def session(region: str | None = None, *, need_credentials: bool = True) -> Any:
    """A boto3 session for `region` (else the AWS configuration's region).

    Raises:
        RemoteError: no region is configured, the profile is unknown, or (with `need_credentials`) no credentials
            can be found or their provider (SSO, credential_process) fails.
    """
    import boto3

    with aws_errors("reading the AWS configuration"):
        boto = boto3.Session(region_name=region)
        if not boto.region_name:
            raise RemoteError(
                "no AWS region configured", hint="pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION"
            )
        if need_credentials and boto.get_credentials() is None:
            raise RemoteError("no AWS credentials found", hint=CREDENTIALS_HINT)
    return boto


@contextlib.contextmanager
def aws_errors(action: str, *, instance_type: str | None = None, bucket: str | None = None) -> Iterator[None]:
    """Turn any AWS failure raised while doing `action` into a `RemoteError` that says what to do."""
    try:
        yield
    except MeldError:
        raise
    except Exception as exc:
        error = translate(exc, action, instance_type=instance_type, bucket=bucket)
        if error is None:
            raise
        raise error from None


def aws_boundary(action: str) -> Callable[[F], F]:
    """`aws_errors(action)` around a function, or around every step of a generator function."""

    def decorate(function: F) -> F:
        if inspect.isgeneratorfunction(function):

            @functools.wraps(function)
            def generator(*args: Any, **kwargs: Any) -> Any:
                with aws_errors(action):
                    yield from function(*args, **kwargs)

            return generator  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with aws_errors(action):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def translate(
    exc: BaseException, action: str, *, instance_type: str | None = None, bucket: str | None = None
) -> RemoteError | None:
    """The `RemoteError` for an AWS-side exception, or None when `exc` is not one (a bug: let it show)."""
    import boto3.exceptions
    import botocore.exceptions
    import s3transfer.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        return explain_client_error(exc, action, instance_type=instance_type, bucket=bucket)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return _explain_botocore(exc, action)
    transfer_errors = (boto3.exceptions.Boto3Error, s3transfer.exceptions.S3UploadFailedError,
                       s3transfer.exceptions.S3DownloadFailedError, s3transfer.exceptions.RetriesExceededError,
                       s3transfer.exceptions.TransferNotDoneError, s3transfer.exceptions.FatalError)  # fmt: skip
    if isinstance(exc, transfer_errors):
        return RemoteError(
            f"{action}: {first_line(exc)}",
            hint="check the bucket, its region and your permissions on it (s3:PutObject, s3:GetObject)",
        )
    if isinstance(exc, tarfile.TarError):
        return RemoteError(
            f"{action}: unsafe or damaged archive: {first_line(exc)}",
            hint="the archive was not written by a meldctl job; list it with `tar tzf` before using it",
        )
    return None


def _explain_botocore(exc: Any, action: str) -> RemoteError:
    import botocore.exceptions as errors

    what = f"{action}: {first_line(exc)}"
    if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
        return RemoteError(f"{action}: no AWS credentials found", hint=CREDENTIALS_HINT)
    if isinstance(exc, errors.NoRegionError):
        return RemoteError(f"{action}: no AWS region configured", hint="pass --region or set AWS_DEFAULT_REGION")
    if isinstance(exc, errors.SSOError | errors.TokenRetrievalError):
        return RemoteError(what, hint="your AWS SSO session is missing or expired: run `aws sso login --profile NAME`")
    if isinstance(exc, errors.CredentialRetrievalError):
        return RemoteError(
            what, hint="the credential_process of your AWS profile failed: run it by hand to see why (~/.aws/config)"
        )
    if isinstance(exc, errors.ProfileNotFound):
        return RemoteError(what, hint="check AWS_PROFILE, or create it with `aws configure --profile NAME`")
    if isinstance(exc, errors.ConnectionError | errors.HTTPClientError):
        return RemoteError(what, hint="check the network connection, any proxy (HTTPS_PROXY) and the --region")
    if isinstance(exc, errors.ParamValidationError):
        return RemoteError(what, hint="a value in the request is not valid (see the message); check the settings")
    return RemoteError(what, hint="see the AWS configuration guide in docs/remote.md")


def explain_client_error(
    exc: Any, action: str, *, instance_type: str | None = None, bucket: str | None = None
) -> RemoteError:
    """A `RemoteError` for a botocore `ClientError`, with a hint for the failures users meet most."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "Unknown"
    message = first_line(error.get("Message", "")) or first_line(exc)
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


def first_line(value: object) -> str:
    """The first non-empty line of a message, whitespace collapsed, at most a few hundred characters."""
    lines = [" ".join(line.split()) for line in str(value).splitlines() if line.strip()]
    text = lines[0] if lines else type(value).__name__
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def bucket_region(boto_session: Any, bucket: str) -> str:
    """The region of `bucket`, read with HeadBucket (its `x-amz-bucket-region`), else GetBucketLocation.

    Raises:
        RemoteError: the bucket does not exist or is not ours.
    """
    import botocore.exceptions

    client = boto_session.client("s3")
    with aws_errors(f"checking bucket {bucket}", bucket=bucket):
        try:
            headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"].get("HTTPHeaders", {})
        except botocore.exceptions.ClientError as exc:
            # S3 names the bucket's region even when it answers 301 (another region) or 403.
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if "x-amz-bucket-region" not in headers:
                raise
        if headers.get("x-amz-bucket-region"):
            return headers["x-amz-bucket-region"]
        location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def check_bucket(boto_session: Any, bucket: str) -> None:
    """Fail before any upload when the bucket is missing, not ours, or in another region than the job.

    Raises:
        RemoteError: with the fix (another --bucket, or --region of the bucket).
    """
    region = bucket_region(boto_session, bucket)
    if region != boto_session.region_name:
        raise RemoteError(
            f"S3 bucket {bucket} is in {region}, the job would run in {boto_session.region_name}",
            hint=f"pass --region {region}, or a bucket in {boto_session.region_name} (SageMaker reads its channels "
            "from the job's region)",
        )


@dataclass(frozen=True)
class Identity:
    """Who meldctl would act as, without any secret: the region, and where the credentials come from."""

    region: str | None
    credentials: str | None  # e.g. env, shared-credentials-file, sso, assume-role, iam-role; None: none found
    profile: str | None
    problem: str | None = None


def identity(region: str | None = None) -> Identity:
    """The AWS region and credential source boto3 would use; no network call, no secret in the result."""
    import boto3

    try:
        boto = boto3.Session(region_name=region)
        credentials = boto.get_credentials()
    except Exception as exc:
        error = translate(exc, "reading the AWS credentials")
        if error is None:
            raise
        return Identity(region, None, None, problem=error.message)
    method = getattr(credentials, "method", None) if credentials is not None else None
    return Identity(boto.region_name, method, boto.profile_name)
