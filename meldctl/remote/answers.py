"""Refuse answers that are not what the AWS API promises, naming the URL they came from.

botocore parses what it gets as best it can: an HTML page answered with 200 (a captive portal, a proxy's login
page, a wrong `AWS_ENDPOINT_URL`) becomes an empty answer, so that `endpoint delete` reported success and
`endpoint list` an empty region; binary garbage or a 500 whose body is not UTF-8 raised `UnicodeDecodeError`
from deep inside the parser. `check_answers` hooks every client of a session: before botocore parses an
answer, its body must be what the protocol promises (a JSON object for SageMaker and CloudWatch Logs, XML
for S3) and never an HTML page; otherwise `UnexpectedAnswer` says which URL answered what.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from meldctl.errors import RemoteError

ENDPOINT_HINT = (
    "this is not AWS answering: check AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>), any proxy "
    "(HTTPS_PROXY), and whether the network wants a login page first"
)
_JSON_PROTOCOLS = frozenset({"json", "rest-json", "smithy-rpc-v2-cbor"})
_XML_PROTOCOLS = frozenset({"rest-xml", "query", "ec2"})
URL_KEY = "MeldctlEndpointUrl"
"""Where a server error's `ClientError.response` names the URL that answered it."""
_last_url = threading.local()  # the URL each thread last sent a request to (botocore sends and parses in one thread)


class UnexpectedAnswer(RemoteError):
    """An answer that is not an AWS API answer: an HTML page, garbage, a body that is not UTF-8.

    Args:
        url: Where it came from (scheme, host and port).
        status: Its HTTP status.
        what: What it was, e.g. "an HTML page".
    """

    def __init__(self, url: str, status: int, what: str) -> None:
        super().__init__(f"{url} answered HTTP {status} with {what}, not an AWS API answer", hint=ENDPOINT_HINT)
        self.url = url


def check_answers(boto_session: Any) -> Any:
    """Check every answer of the clients this boto3 session creates from now on; returns the session."""
    events = boto_session.events
    if not getattr(boto_session, "_meldctl_checked", False):
        events.register("before-send", _remember_url, unique_id="meldctl-remember-url")
        # Before botocore's own S3 handler, which rewrites an unparsable 200 into a 500 (`before-parse.s3.*`):
        # a wildcard node at the same depth is reached after it and so called before it.
        events.register_first("before-parse.*.*", _check_answer, unique_id="meldctl-check-answer")
        boto_session._meldctl_checked = True
    return boto_session


def _remember_url(request: Any, **kwargs: Any) -> None:
    parts = urlsplit(request.url)
    _last_url.value = f"{parts.scheme}://{parts.netloc}"


def _check_answer(
    operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **kwargs: Any
) -> None:
    """Raise `UnexpectedAnswer` for an answer botocore would misread; return for any plausible one.

    The body decides, not the Content-Type: moto (and so LocalStack) sends JSON as text/html. A server error
    keeps the URL that answered it (`URL_KEY` in the `ClientError`'s response), for its message.
    """
    status = int(response_dict.get("status_code", 0))
    body = response_dict.get("body")
    problem = None
    if isinstance(body, bytes) and body.strip():
        problem = _body_problem(body, operation_model.service_model.resolved_protocol)
    elif status < 300 and operation_model.name == "HeadObject" and "etag" not in response_dict.get("headers", {}):
        problem = "a HEAD answer without the object's ETag"  # S3 always sends it; a web page's HEAD does not
    url = getattr(_last_url, "value", "the AWS endpoint")
    if problem is not None:
        raise UnexpectedAnswer(url, status, problem)
    if status >= 500:
        customized_response_dict[URL_KEY] = url


def _body_problem(body: bytes, protocol: str) -> str | None:
    """What is wrong with a whole (not streamed) body for this protocol, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(body)} bytes that are not UTF-8 text"
    start = text.lstrip()[:200].lower()
    if start.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if protocol in _JSON_PROTOCOLS and protocol != "smithy-rpc-v2-cbor":
        try:
            value = json.loads(text)
        except ValueError:
            return f"text that is not JSON ({_preview(text)})"
        return None if isinstance(value, dict) else f"JSON that is not an object ({_preview(text)})"
    if protocol in _XML_PROTOCOLS:
        try:
            root = ElementTree.fromstring(text)  # noqa: S314 - parsed to be checked; botocore parses it again
        except ElementTree.ParseError:
            return f"text that is not XML ({_preview(text)})"
        if root.tag.rsplit("}", 1)[-1].lower() == "html":
            return "an HTML page"
    return None


def _preview(text: str) -> str:
    return repr(" ".join(text.split())[:60])
