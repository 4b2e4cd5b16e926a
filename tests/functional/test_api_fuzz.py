"""The REST API fuzzed by schemathesis from its own ``/openapi.json``, against a running
controller on the simulated cloud: no request, however odd, gets a 5xx, and every answer
matches the document (status codes, content type, body schema).

503 is the one 5xx the API may give by design (no leader, no store): with a healthy leader it
must not appear either, so the check is "no 5xx at all"."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.functional.harness import cloud_factory

OPERATOR = "fuzz-operator-token-0123456789"


@pytest.fixture(scope="module")
def api_schema() -> Iterator[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        factory = cloud_factory(Path(tmp))
        make = next(factory)
        h = make(hosts=4, instances=8)
        h.raw["api"] = {
            "listen": "127.0.0.1:0",
            "tokens": [{"name": "fuzzer", "role": "operator", "token": OPERATOR}],
        }
        h.start()
        assert h.controller is not None and h.controller.api is not None
        url = h.controller.api.url
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")
        factory.close()


def test_no_request_gets_a_server_error(api_schema: Any) -> None:
    # schemathesis's own pytest plugin does not load under this pytest; its engine does.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15

    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            response = case.call(headers={"X-Auth-Token": OPERATOR}, timeout=30)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            case.validate_response(response)

        try:
            fuzz()
        except Unsatisfiable:
            # nothing invalid to send (no parameters, no body): only the positive mode runs
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
