"""The gateway's own OpenAPI 3 document: every route it serves, its bodies and its answers.

Request bodies come from the same pydantic models that validate them (``models.py``), so
the document cannot drift from the validation. Served at ``GET /system/openapi.json`` and
fuzzed in the tests (``tests/gateway/test_fuzz.py``): no route may answer a bare 500, and
every status a route answers must be listed here.
"""

from __future__ import annotations

from typing import Any

from testbed.gateway.models import deploy_schema, resources_schema

__all__ = ["openapi_document"]

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
        }
    }
}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "function (or workflow) name",
}


def _answers(codes: dict[int, str], *, error_body: bool = True) -> dict[str, Any]:
    """Response objects: 2xx codes carry no body schema here; others the JSON error body."""
    out: dict[str, Any] = {}
    for code, text in codes.items():
        entry: dict[str, Any] = {"description": text}
        if code >= 400 and error_body:
            entry["content"] = {**_ERROR, **_TEXT}
        out[str(code)] = entry
    return out


# answers every /system/* route may give besides its own
_SYSTEM = {
    401: "missing or wrong basic auth (user admin)",
    413: "body too large",
    503: "the platform cannot act now (see Retry-After)",
}
# answers of the invocation routes: the function's own status passes through, and the
# gateway's own failures are 502 (replica died), 503 (no replica could start), 504 (timeout)
_INVOKE = {
    200: "the function's answer (its own status code passes through)",
    400: "bad request (the function's or the gateway's)",
    404: "no such function",
    413: "body too large",
    429: "the function's in-flight or queue limit is reached",
    502: "the replica died while serving the request",
    503: "no replica could be started",
    504: "no answer within the timeout",
}


def _basic_auth() -> list[dict[str, list[str]]]:
    """The basic-auth requirement of ``/system/*`` (a fresh object per operation)."""
    return [{"basicAuth": []}]


def _system_get(ok: str) -> dict[str, Any]:
    """A ``GET /system/...`` operation that answers 200 (``ok``) or 401 without basic auth."""
    return {"security": _basic_auth(), "responses": _answers({200: ok, 401: _SYSTEM[401]})}


def openapi_document(*, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the gateway (OpenFaaS paths plus the testbed's own)."""
    deploy = {"required": True, "content": {"application/json": {"schema": deploy_schema()}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Aquatope testbed gateway (OpenFaaS-compatible)",
            "version": version,
            "description": "OpenFaaS gateway API subset plus /workflow and live limits.",
        },
        "components": {"securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}}},
        "paths": {
            "/healthz": {
                "get": {"responses": _answers({200: "the gateway is up"}), "security": []}
            },
            "/metrics": {
                "get": {"responses": _answers({200: "Prometheus exposition"}), "security": []}
            },
            "/system/openapi.json": {"get": _system_get("this document")},
            "/system/info": {"get": _system_get("provider and version")},
            "/system/functions": {
                "get": _system_get("every function's status"),
                "post": {
                    "security": _basic_auth(),
                    "requestBody": deploy,
                    "responses": _answers(
                        {202: "deployed", 400: "invalid body", 409: "already exists", **_SYSTEM}
                    ),
                },
                "put": {
                    "security": _basic_auth(),
                    "requestBody": deploy,
                    "responses": _answers(
                        {202: "updated", 400: "invalid body", 404: "no such function", **_SYSTEM}
                    ),
                },
                "delete": {
                    "security": _basic_auth(),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["functionName"],
                                    "properties": {"functionName": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": _answers(
                        {202: "removed", 400: "invalid body", 404: "no such function", **_SYSTEM}
                    ),
                },
            },
            "/system/function/{name}": {
                "get": {
                    "security": _basic_auth(),
                    "parameters": [_NAME],
                    "responses": _answers(
                        {200: "the function's status", 400: "bad name", 404: "no such function"}
                        | _SYSTEM
                    ),
                }
            },
            "/system/scale-function/{name}": {
                "post": {
                    "security": _basic_auth(),
                    "parameters": [_NAME],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["replicas"],
                                    "properties": {
                                        "serviceName": {"type": "string"},
                                        "replicas": {"type": "integer", "minimum": 0},
                                    },
                                }
                            }
                        },
                    },
                    "responses": _answers(
                        {
                            200: "scaled",
                            202: "scaling",
                            400: "invalid body",
                            404: "no such function",
                            **_SYSTEM,
                        }
                    ),
                }
            },
            "/system/limits/{name}": {
                "post": {
                    "security": _basic_auth(),
                    "parameters": [_NAME],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": resources_schema()}},
                    },
                    "responses": _answers(
                        {
                            202: "applied live",
                            400: "invalid limits",
                            404: "no such function",
                            409: "the limit cannot be applied now (e.g. below current usage)",
                            422: "the limit is out of the platform's bounds",
                            **_SYSTEM,
                        }
                    ),
                }
            },
            "/system/workflows": {"get": _system_get("the workflows served")},
            "/function/{name}": {
                "post": {
                    "parameters": [_NAME],
                    "requestBody": {"content": {"application/octet-stream": {"schema": {}}}},
                    "responses": _answers(_INVOKE, error_body=False),
                    "security": [],
                }
            },
            "/async-function/{name}": {
                "post": {
                    "parameters": [_NAME],
                    "requestBody": {"content": {"application/octet-stream": {"schema": {}}}},
                    "responses": _answers(
                        {
                            202: "accepted (X-Call-Id)",
                            400: "bad callback URL",
                            404: "no such function",
                            413: "body too large",
                            429: "the async queue is full",
                        }
                    ),
                    "security": [],
                }
            },
            "/workflow/{name}": {
                "post": {
                    "parameters": [_NAME],
                    "requestBody": {"content": {"application/json": {"schema": {}}}},
                    "responses": _answers(_INVOKE, error_body=False),
                    "security": [],
                }
            },
        },
    }
