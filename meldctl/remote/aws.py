"""The boto3 session, the bucket checks, and the one boundary where AWS failures become `RemoteError`s.

Every public function of `meldctl.remote` that talks to AWS runs inside `aws_errors` (or `aws_boundary`), which
turns any botocore, boto3, s3transfer or tarfile exception into one line that says what failed and what to do.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

from meldctl.errors import MeldError, RemoteError
from meldctl.remote.answers import ENDPOINT_HINT, URL_KEY, UnexpectedAnswer, check_answers

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
        boto = check_answers(boto3.Session(region_name=region))
        if not boto.region_name:
            raise RemoteError(
                "no AWS region configured", hint="pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION"
            )
        if need_credentials and boto.get_credentials() is None:
            raise RemoteError("no AWS credentials found", hint=CREDENTIALS_HINT)
    return boto


@contextlib.contextmanager
def aws_errors(
    action: str, *, instance_type: str | None = None, bucket: str | None = None, resource: str = "training job"
) -> Iterator[None]:
    """Turn any AWS failure raised while doing `action` into a `RemoteError` that says what to do.

    Args:
        action: What was being done, the start of the message (`deleting endpoint e1`).
        instance_type: The instance type asked for, named by quota hints.
        bucket: The bucket involved, named when it does not exist.
        resource: What is being worked on, a key of `RESOURCES`: it picks the quota and the listing command
            that hints name.
    """
    try:
        yield
    except UnexpectedAnswer as exc:
        raise RemoteError(f"{action}: {exc.message}", hint=exc.hint) from None
    except MeldError:
        raise
    except Exception as exc:
        error = translate(exc, action, instance_type=instance_type, bucket=bucket, resource=resource)
        if error is None:
            raise
        raise error from None


def aws_boundary(action: str, *, resource: str = "training job") -> Callable[[F], F]:
    """`aws_errors(action)` around a function, or around every step of a generator function."""

    def decorate(function: F) -> F:
        if inspect.isgeneratorfunction(function):

            @functools.wraps(function)
            def generator(*args: Any, **kwargs: Any) -> Any:
                with aws_errors(action, resource=resource):
                    yield from function(*args, **kwargs)

            return generator  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with aws_errors(action, resource=resource):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class ErrorContext(TypedDict, total=False):
    """What the explanation of an AWS error names besides the action: `explain_client_error`'s keywords."""

    instance_type: str | None
    bucket: str | None
    resource: str


def translate(exc: BaseException, action: str, **context: Unpack[ErrorContext]) -> RemoteError | None:
    """The `RemoteError` for an AWS-side exception, or None when `exc` is not one (a bug: let it show)."""
    import boto3.exceptions
    import botocore.exceptions
    import s3transfer.exceptions

    if isinstance(exc, UnexpectedAnswer):
        return RemoteError(f"{action}: {exc.message}", hint=exc.hint)
    if isinstance(exc, botocore.exceptions.ClientError):
        return explain_client_error(exc, action, **context)
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
    if isinstance(exc, errors.ResponseParserError):
        return RemoteError(what, hint=ENDPOINT_HINT)
    if isinstance(exc, errors.ParamValidationError):
        return RemoteError(what, hint="a value in the request is not valid (see the message); check the settings")
    return RemoteError(what, hint="see the AWS configuration guide in docs/remote.md")


@dataclass(frozen=True)
class Resource:
    """What hints say about one kind of SageMaker resource: its quota, its alternatives, how to list them."""

    quota: str
    alternatives: str
    listing: str
    docs: str


RESOURCES = {
    "training job": Resource(
        quota="'{instance_type} for training job usage', or '... for spot training job usage' with --spot",
        alternatives="pick another --instance-type",
        listing="check the job name with `meldctl logs list`",
        docs="docs/remote.md",
    ),
    "processing job": Resource(
        quota="'{instance_type} for processing job usage'",
        alternatives="pick another --instance-type, or fewer --instance-count",
        listing="check the job name with `aws sagemaker list-processing-jobs`",
        docs="docs/analyze.md",
    ),
    "endpoint": Resource(
        quota="'{instance_type} for endpoint usage'",
        alternatives="pick another --instance-type, or try --serverless",
        listing="meldctl endpoint list",
        docs="docs/serving.md",
    ),
}


@dataclass(frozen=True)
class ErrorRow:
    """One row of the table of AWS errors users meet: which `ClientError` it matches and what they are told.

    `hint` and `message` are formatted with `action`, `code`, `message` (AWS's first line), `container` (the
    `error` sentence of `meldctl serve` inside it), `bucket`, `instance_type`, `quota`, `alternatives`,
    `listing`, `docs` and `url` (what answered a server error); a row without `message` keeps `ACTION: CODE: MESSAGE`.
    """

    codes: frozenset[str]
    hint: str | None
    says: tuple[str, ...] = ()  # any of these in the message (lower case); empty: any message
    operations: tuple[str, ...] = ()  # only for these API operations; empty: any
    needs_bucket: bool = False
    message: str | None = None


_VALIDATION = frozenset({"ValidationException"})
_MISSING_WORDS = ("not found", "could not find", "does not exist")
ERROR_TABLE = (
    ErrorRow(frozenset({"ResourceLimitExceeded"}),
             "ask for more in Service Quotas (Amazon SageMaker, {quota}), or {alternatives}; see {docs}"),
    ErrorRow(frozenset(_CREDENTIAL_CODES), CREDENTIALS_HINT),
    # S3 answers a HEAD request without a body, so an expired token on HeadObject/HeadBucket is a bare 400.
    ErrorRow(frozenset({"400", "BadRequest"}), f"most often an expired session token (AWS_SESSION_TOKEN): "
             f"{CREDENTIALS_HINT}", operations=("HeadObject", "HeadBucket"),
             message="{action}: S3 refused the request with 400 Bad Request and no reason"),
    ErrorRow(frozenset({"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
                        "RequestLimitExceeded", "SlowDown", "RequestThrottled", "RequestThrottledException"}),
             "AWS is throttling this account's requests (they were retried): wait a minute and run it again; "
             "AWS_MAX_ATTEMPTS=10 AWS_RETRY_MODE=adaptive retry longer"),
    ErrorRow(frozenset({"500", "502", "503", "504", "InternalError", "InternalFailure", "InternalServerError",
                        "ServiceUnavailable", "ServiceUnavailableException"}),
             "a failure on the server's side (it was retried): run the command again in a minute; if it lasts, "
             "check AWS_ENDPOINT_URL and the AWS Health Dashboard", message="{action}: {code}: {message} (from {url})"),
    ErrorRow(frozenset({"AccessDenied", "AccessDeniedException", "403", "Forbidden"}),
             "the AWS identity (or the --role) lacks a permission; see {docs}"),
    ErrorRow(frozenset({"NoSuchBucket"}), "create it with `aws s3 mb s3://{bucket}` in the job's region, or pass "
             "another --bucket", needs_bucket=True, message="{action}: S3 bucket {bucket} does not exist"),
    ErrorRow(frozenset({"404", "NotFound"}), "create it with `aws s3 mb s3://{bucket}` in the job's region, or pass "
             "another --bucket", operations=("HeadBucket", "GetBucketLocation", "ListObjectsV2"), needs_bucket=True,
             message="{action}: S3 bucket {bucket} does not exist"),
    ErrorRow(frozenset({"404", "NotFound", "NoSuchKey"}), "it was deleted, or never written there",
             operations=("HeadObject", "GetObject"), message="{action}: no such S3 object ({code})"),
    ErrorRow(_VALIDATION, "pick an instance type SageMaker offers here, e.g. ml.g5.xlarge", says=("instancetype",)),
    ErrorRow(_VALIDATION, "check --role: an IAM role ARN that trusts sagemaker.amazonaws.com", says=("role",)),
    ErrorRow(_VALIDATION, "push the image to ECR in this region and pass its URI ({docs})", says=("image",)),
    ErrorRow(frozenset({"ModelError"}), None, message="{action}: the container refused the request: {container}"),
    ErrorRow(frozenset({"ResourceNotFound"}), "{listing} (and the --region)"),
    ErrorRow(_VALIDATION, "{listing} (and the --region)", says=_MISSING_WORDS),
)  # fmt: skip
"""The AWS errors users meet most, first match wins; any other error is its own first line, without a hint."""


def explain_client_error(
    exc: Any,
    action: str,
    *,
    instance_type: str | None = None,
    bucket: str | None = None,
    resource: str = "training job",
) -> RemoteError:
    """A `RemoteError` for a botocore `ClientError`: its row of `ERROR_TABLE`, else its own first line."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "Unknown"
    message = first_line(error.get("Message", "")) or first_line(exc)
    operation = str(getattr(exc, "operation_name", ""))
    kind = RESOURCES[resource]
    values = {
        "action": action, "code": code, "message": message, "container": container_error(str(error.get("Message", ""))),
        "bucket": bucket, "instance_type": instance_type or "the instance type", "alternatives": kind.alternatives,
        "listing": kind.listing, "docs": kind.docs, "url": exc.response.get(URL_KEY, "the AWS endpoint"),
    }  # fmt: skip
    values["quota"] = kind.quota.format(**values)
    for row in ERROR_TABLE:
        if (
            code in row.codes
            and (not row.says or any(word in message.lower() for word in row.says))
            and (not row.operations or operation in row.operations)
            and (bucket or not row.needs_bucket)
        ):
            text = row.message.format(**values) if row.message else f"{action}: {code}: {message}"
            return RemoteError(text, hint=row.hint.format(**values) if row.hint else None)
    return RemoteError(f"{action}: {code}: {message}")


def container_error(message: str) -> str:
    """The `error` sentence of `meldctl serve`'s JSON inside SageMaker's ModelError message, if there is one."""
    start = message.find("{")
    if start >= 0:
        with contextlib.suppress(json.JSONDecodeError, ValueError):
            inner = json.loads(message[start : message.rfind("}") + 1])
            if isinstance(inner, dict) and "error" in inner:
                return first_line(inner["error"])
    return first_line(message)


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


def check_bucket(boto_session: Any, bucket: str, *, purpose: str = "the job") -> None:
    """Fail before any upload when the bucket is missing, not ours, or in another region than the job.

    Args:
        boto_session: The session, in the region where SageMaker will read the bucket.
        bucket: The bucket.
        purpose: What runs there, for the message ("the job", "the endpoint").

    Raises:
        RemoteError: with the fix (another --bucket, or --region of the bucket).
    """
    region = bucket_region(boto_session, bucket)
    if region != boto_session.region_name:
        raise RemoteError(
            f"S3 bucket {bucket} is in {region}, {purpose} would run in {boto_session.region_name}",
            hint=f"pass --region {region}, or a bucket in {boto_session.region_name} (SageMaker reads S3 "
            "in its own region)",
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
