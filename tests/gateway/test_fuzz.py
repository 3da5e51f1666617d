"""Fuzz every route of the gateway's own OpenAPI document against a live gateway (loopback).

Hypothesis generates bodies, names and parameters from the document; the gateway must never
answer a bare 500, and every status it answers must be one the document lists. Bounded: a
few dozen examples per operation, no shrinking beyond hypothesis's defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from testbed.core.platform import FunctionSpec
from testbed.gateway.auth import read_password
from testbed.gateway.openapi import openapi_document

pytestmark = pytest.mark.slow

EXAMPLES = 25
INVOKE_ROUTES = {"/function/{name}", "/workflow/{name}"}


@pytest.fixture(scope="module")
def gateway(local_platform: Any, handler_dirs: dict[str, Path]) -> tuple[str, str]:
    local_platform.deploy(FunctionSpec(name="fuzz-echo", handler=str(handler_dirs["echo"])))
    password = read_password(Path(os.environ["AQUATOPE_HOME"]))  # set by local_platform
    assert password
    return local_platform.url, password


def test_the_document_is_served_and_lists_every_route(gateway: tuple[str, str]) -> None:
    import httpx

    url, password = gateway
    served = httpx.get(f"{url}/system/openapi.json", auth=("admin", password)).json()
    assert served == openapi_document(version=served["info"]["version"])
    assert httpx.get(f"{url}/system/openapi.json").status_code == 401
    assert {"/system/functions", "/function/{name}", "/workflow/{name}"} <= set(served["paths"])


def _operations() -> list[tuple[str, str]]:
    doc = openapi_document(version="fuzz")
    return [(path, method) for path, item in doc["paths"].items() for method in item]


@pytest.mark.parametrize(("path", "method"), _operations())
def test_no_route_answers_a_bare_500(gateway: tuple[str, str], path: str, method: str) -> None:
    url, password = gateway
    schema = schemathesis.openapi.from_dict(openapi_document(version="fuzz"))
    operation = schema[path][method.upper()]
    # the invocation routes pass the function's own status through, so 502-504 are answers
    checks = [status_code_conformance]
    if path not in INVOKE_ROUTES:
        checks.append(not_a_server_error)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        response = case.call(base_url=url, auth=("admin", password), timeout=30)
        assert response.status_code != 500, (case.path, case.body, response.text[:300])
        case.validate_response(response, checks=checks)

    fuzz()
