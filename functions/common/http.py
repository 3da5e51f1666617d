"""JSON in, JSON out: the request parsing and response helpers every shipped handler uses.

A handler wraps its body in :func:`json_handler`; raising :class:`BadInput` anywhere inside
becomes a 400 with the message, so bad input never crashes a replica.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "BadInput",
    "bad_request",
    "field",
    "json_handler",
    "ok",
    "parse_object",
]

_JSON_HEADERS = {"Content-Type": "application/json"}


class BadInput(ValueError):
    """The request is malformed; the message says which field and why."""


def ok(body: Any, status_code: int = 200) -> dict[str, Any]:
    """A python3-http response carrying ``body`` as JSON."""
    return {"statusCode": status_code, "body": body, "headers": dict(_JSON_HEADERS)}


def bad_request(message: str) -> dict[str, Any]:
    """A 400 response with ``{"error": message}``."""
    return {"statusCode": 400, "body": {"error": message}, "headers": dict(_JSON_HEADERS)}


def parse_object(body: bytes | str | None) -> dict[str, Any]:
    """Parse a request body that must be a JSON object.

    Raises:
        BadInput: the body is empty, not JSON (or nested too deeply), or not an object.
    """
    if not body:
        raise BadInput("request body must be a JSON object, got an empty body")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput("request body is JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise BadInput(f"request body must be a JSON object, got {type(value).__name__}")
    return value


def field(
    obj: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    *,
    default: Any = ...,
    where: str = "",
) -> Any:
    """Fetch ``obj[name]`` and check its type (``bool`` is never accepted as ``int``).

    Args:
        obj: the parsed JSON object.
        name: the field to read.
        kind: the accepted type(s).
        default: returned when the field is missing; without it the field is required.
        where: a prefix naming the enclosing object in error messages.

    Raises:
        BadInput: the field is missing (and required) or has the wrong type.
    """
    label = f"{where}.{name}" if where else name
    if name not in obj or obj[name] is None:
        if default is ...:
            raise BadInput(f"field {label!r} is required")
        return default
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadInput(f"field {label!r} must be {_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise BadInput(f"field {label!r} must be {_names(kinds)}, got {type(value).__name__}")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(
        {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "list": "a list",
            "dict": "an object",
            "bool": "a boolean",
        }.get(k.__name__, k.__name__)
        for k in kinds
    )


Handler = Callable[[Any, Any], dict[str, Any]]


def json_handler(func: Callable[[dict[str, Any]], Any]) -> Handler:
    """Turn ``func(request_object) -> json_value`` into a python3-http ``handle(event, context)``.

    The event body is parsed as a JSON object and handed to ``func``; its return value is
    the 200 body. :class:`BadInput` raised by ``func`` becomes a 400.
    """

    @functools.wraps(func)
    def handle(event: Any, context: Any) -> dict[str, Any]:
        try:
            return ok(func(parse_object(getattr(event, "body", b""))))
        except BadInput as exc:
            return bad_request(str(exc))
        except RecursionError:
            return bad_request("request is nested too deeply")

    return handle


def decode_base64(text: str, *, max_bytes: int, what: str) -> bytes:
    """Decode a base64 request field, refusing anything over ``max_bytes`` before decoding.

    Raises:
        BadInput: ``what`` is larger than ``max_bytes`` or not valid base64.
    """
    import base64
    import binascii

    if len(text) > max_bytes * 4 // 3 + 4:
        raise BadInput(f"{what} is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{what} is not valid base64") from None
