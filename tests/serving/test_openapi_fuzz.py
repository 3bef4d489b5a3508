"""The HTTP API fuzzed from its own OpenAPI (schemathesis) against the live `meldctl serve` on 127.0.0.1.

Every route of /openapi.json gets generated requests, valid and invalid, in a bounded and repeatable run
(hypothesis' derandomised examples): no answer may be a 5xx, every 4xx is `{"error": "one sentence"}`, and every
answer matches the schema the server publishes.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from serve_servers import ServeProcess


def errors_are_one_json_sentence(ctx, response, case) -> None:  # noqa: ANN001 - schemathesis' check signature
    """A refusal is `{"error": "..."}` (one line, no traceback), served as JSON."""
    if 400 <= response.status_code < 600:
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
        body = response.json()
        assert isinstance(body, dict) and list(body) == ["error"], body
        assert isinstance(body["error"], str) and "\n" not in body["error"] and "Traceback" not in body["error"]


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, errors_are_one_json_sentence]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_api_keeps_its_own_schema(served: ServeProcess, mode: str) -> None:
    api = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/analyze", "/invocations", "/ping", "/health"}
    for operation in operations:
        if mode == "negative" and operation.method.upper() == "GET":
            continue  # nothing to get wrong: the GET routes take no parameters

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=50, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def call(case) -> None:  # noqa: ANN001 - schemathesis' Case
            case.call_and_validate(checks=CHECKS, timeout=120)
            assert served.leftovers() == []  # every request folder removed before its answer

        call()
