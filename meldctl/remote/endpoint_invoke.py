"""Calling an endpoint: one clip (`invoke`) or a whole video (`analyze`), real-time or asynchronous.

The bodies are `meldctl.protocol`'s, which the server in the container reads. What does not fit a real-time
request (6 MB) goes to S3 under the endpoint's inputs prefix, the one prefix its container may read (the
deploy set it in the model's environment), and the request names it (`clip_s3`, `video_s3`). An async endpoint
gets every request through S3 and InvokeEndpointAsync; its answer is polled from the output location.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meldctl import protocol
from meldctl.errors import RemoteError
from meldctl.remote.aws import aws_boundary, aws_errors, container_error
from meldctl.remote.endpoint_lifecycle import ENDPOINT, in_service
from meldctl.remote.endpoint_spec import ALLOW_S3_VARIABLE, ASYNC_TIMEOUT_S, inputs_prefix
from meldctl.remote.s3 import object_exists, parse_s3_uri, read_text, s3_uri

REALTIME_LIMIT = 6 * 2**20
"""InvokeEndpoint's largest request body; a bigger clip or video goes through S3."""
REALTIME_READ_TIMEOUT_S = 70  # SageMaker gives a real-time request 60 s: wait for its answer, not less

OnWait = Callable[[float], None]
"""Called with the seconds waited so far, each time an async answer is polled and not there yet."""


@dataclass(frozen=True)
class Target:
    """An endpoint ready for a request: where async answers go, and the S3 prefix its container may read."""

    name: str
    async_output: str | None
    inputs: str | None


@aws_boundary("invoking the endpoint", resource=ENDPOINT)
def invoke(
    boto: Any,
    name: str,
    clip: Path | None,
    text: str | None,
    *,
    bucket: str | None,
    prefix: str,
    poll_s: float = 5.0,
    timeout_s: float = 900.0,
    on_wait: OnWait | None = None,
    context: protocol.Context | None = None,
    no_context: bool = False,
) -> dict[str, Any]:
    """One prediction from an endpoint: InvokeEndpoint, or for an async endpoint upload, invoke and poll.

    A clip over the real-time limit goes to S3 first and the request names it (`clip_s3`). `context` (what was
    said before, oldest first) and `no_context` travel with it, as `meldctl predict --context` gives them.

    Raises:
        RemoteError: no such endpoint, not in service, the container refused the request, or no answer in time.
    """
    target = find_target(boto, name, bucket=bucket, prefix=prefix)
    kind, body = protocol.clip_form(clip, text, context=context, no_context=no_context)
    if target.async_output:
        return _invoke_async(boto, target, kind, body, poll_s=poll_s, timeout_s=timeout_s, on_wait=on_wait)
    if len(body) > REALTIME_LIMIT:
        if clip is None:
            raise RemoteError(f"the text is over the {REALTIME_LIMIT // 2**20} MB a real-time endpoint accepts")
        uri = _upload_input(boto, target, clip, "the clip")
        kind, body = protocol.clip_s3_json(uri, text, clip.name, context=context, no_context=no_context)
    return _invoke_realtime(boto, name, kind, body)


@aws_boundary("analysing the video on the endpoint", resource=ENDPOINT)
def analyze(
    boto: Any,
    name: str,
    video: Path,
    *,
    subtitles_text: str | None = None,
    segment: str | None = None,
    bucket: str | None,
    prefix: str,
    poll_s: float = 10.0,
    timeout_s: float = ASYNC_TIMEOUT_S + 300,  # the endpoint's own limit, and the time to queue
    on_wait: OnWait | None = None,
) -> dict[str, Any]:
    """A whole video's timeline from an endpoint (its `/analyze` route), as `meldctl analyze --json` prints it.

    The video travels inside the JSON body (base64) when that fits a real-time request, else through S3
    (`video_s3`); an async endpoint gets the request through S3 and is polled.

    Raises:
        RemoteError: no such endpoint, not in service, the container refused the video, or no answer in time.
    """
    target = find_target(boto, name, bucket=bucket, prefix=prefix)
    inline = (video.stat().st_size + 2) // 3 * 4 + len((subtitles_text or "").encode()) + 1024 <= REALTIME_LIMIT
    if inline:
        kind, body = protocol.analyze_json(video=video, subtitles_text=subtitles_text, segment=segment)
    else:
        uri = _upload_input(boto, target, video, "the video")
        kind, body = protocol.analyze_json(video_s3=uri, subtitles_text=subtitles_text, segment=segment)
    if target.async_output:
        return _invoke_async(boto, target, kind, body, poll_s=poll_s, timeout_s=timeout_s, on_wait=on_wait)
    return _invoke_realtime(boto, name, kind, body)


def find_target(boto: Any, name: str, *, bucket: str | None, prefix: str) -> Target:
    """The endpoint, checked to be in service, with its async output and the S3 prefix its container reads.

    The prefix is the one the deploy put in the model's environment; an endpoint deployed without one gets
    `s3://BUCKET/PREFIX/endpoints/NAME/inputs` from the settings.

    Raises:
        RemoteError: no such endpoint, or not in service.
    """
    client = boto.client("sagemaker")
    _, config = in_service(client, name)
    output = ((config.get("AsyncInferenceConfig") or {}).get("OutputConfig") or {}).get("S3OutputPath")
    allowed = None
    models = [
        variant.get("ModelName") for variant in config.get("ProductionVariants") or [] if variant.get("ModelName")
    ]
    if models:
        allowed = _allowed_prefix(client, models[0])
    bucket = bucket or (parse_s3_uri(output)[0] if output else None)  # an async endpoint has a bucket of its own
    if allowed:
        inputs: str | None = "s3://" + allowed.split(",")[0].strip().removeprefix("s3://")
    else:
        inputs = inputs_prefix(bucket, prefix, name) if bucket else None
    return Target(name, output, inputs)


def _allowed_prefix(client: Any, model: str) -> str | None:
    """The S3 prefix the model's container may read (its deploy's `MELDCTL_SERVE__ALLOW_S3`), if any.

    An identity allowed to invoke but not to describe models gets None: the settings' bucket is used then.
    """
    import botocore.exceptions

    with aws_errors(f"describing model {model}", resource=ENDPOINT):
        try:
            container = client.describe_model(ModelName=model).get("PrimaryContainer") or {}
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("AccessDenied", "AccessDeniedException"):
                return None
            raise
    return (container.get("Environment") or {}).get(ALLOW_S3_VARIABLE)


def _upload_input(boto: Any, target: Target, path: Path, what: str) -> str:
    """Upload a file under the endpoint's inputs prefix; returns its URI."""
    if not target.inputs:
        raise RemoteError(
            f"{what} is over the {REALTIME_LIMIT // 2**20} MB a real-time request carries and must go through S3",
            hint="pass --bucket (or set remote.bucket): the endpoint's role must read it; or deploy again with it",
        )
    uri = s3_uri(*parse_s3_uri(target.inputs), uuid.uuid4().hex, path.name)
    bucket, key = parse_s3_uri(uri)
    with aws_errors(f"uploading {what}", bucket=bucket, resource=ENDPOINT):
        boto.client("s3").upload_file(str(path), bucket, key)
    return uri


def _invoke_realtime(boto: Any, name: str, kind: str, body: bytes) -> dict[str, Any]:
    from botocore.config import Config

    runtime = boto.client("sagemaker-runtime", config=Config(read_timeout=REALTIME_READ_TIMEOUT_S))
    with aws_errors(f"invoking endpoint {name}", resource=ENDPOINT):
        answer = runtime.invoke_endpoint(EndpointName=name, ContentType=kind, Accept=protocol.JSON, Body=body)
        raw = answer["Body"].read()
    return _json_answer(raw, name)


def _invoke_async(
    boto: Any, target: Target, kind: str, body: bytes, *, poll_s: float, timeout_s: float, on_wait: OnWait | None
) -> dict[str, Any]:
    """Put the request in S3, InvokeEndpointAsync, and poll the output and failure locations."""
    s3 = boto.client("s3")
    name = target.name
    request = s3_uri(*parse_s3_uri(str(target.inputs)), f"{uuid.uuid4().hex}.request")
    bucket, key = parse_s3_uri(request)
    with aws_errors("uploading the request", bucket=bucket, resource=ENDPOINT):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)
    with aws_errors(f"invoking endpoint {name}", resource=ENDPOINT):
        answer = boto.client("sagemaker-runtime").invoke_endpoint_async(
            EndpointName=name,
            InputLocation=request,
            ContentType=kind,
            Accept=protocol.JSON,
            InvocationTimeoutSeconds=ASYNC_TIMEOUT_S,
        )
    output, failure = answer["OutputLocation"], answer.get("FailureLocation")
    start = time.monotonic()
    while True:
        with aws_errors(f"reading the answer of endpoint {name}", resource=ENDPOINT):
            if failure and object_exists(s3, failure):
                raise RemoteError(f"endpoint {name} failed on the request: {container_error(read_text(s3, failure))}")
            if object_exists(s3, output):
                return _json_answer(read_text(s3, output).encode("utf-8"), name)
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            raise RemoteError(
                f"no answer from endpoint {name} after {timeout_s:g} s", hint=f"it will appear at {output}"
            )
        if on_wait is not None:
            on_wait(elapsed)
        time.sleep(poll_s)


def _json_answer(raw: bytes, name: str) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RemoteError(f"endpoint {name} answered something that is not JSON: {raw[:200]!r}") from None
    if not isinstance(answer, dict):
        raise RemoteError(f"endpoint {name} answered JSON that is not an object: {str(answer)[:200]}")
    return answer
