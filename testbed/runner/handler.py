"""Load and call a python3-http handler: ``handle(event, context) -> {"statusCode", "body", ...}``.

Stdlib only: this module runs inside every replica (process or container), where start-up
time is cold-start time.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["Context", "Event", "Handler", "HandlerResponse", "call_handler", "load_handler"]


@dataclass
class Event:
    """The request as the handler sees it (same attributes as OpenFaaS's python3-http template)."""

    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    query: Mapping[str, str] = field(default_factory=dict)
    path: str = "/"

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` on bad JSON)."""
        return json.loads(self.body or b"null")


@dataclass
class Context:
    """Invocation context: the replica's host name and function name."""

    hostname: str = field(default_factory=socket.gethostname)
    function: str = ""


@dataclass(frozen=True)
class HandlerResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


Handler = Callable[[Event, Context], Any]


def load_handler(directory: str | Path, module_name: str = "handler") -> Handler:
    """Import ``handler.py`` from ``directory`` and return its ``handle`` function.

    The directory is put on ``sys.path`` so the handler can import its own helper modules.

    Raises:
        ImportError: no ``handler.py`` or no ``handle`` in it.
    """
    directory = Path(directory).resolve()
    path = directory / f"{module_name}.py"
    if not path.is_file():
        raise ImportError(f"{path}: no handler module")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    unique = f"_aquatope_handler_{abs(hash(str(directory)))}"
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot load")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise ImportError(f"{path}: defines no handle(event, context)")
    return handle  # type: ignore[no-any-return]


def _encode_body(body: Any, headers: dict[str, str]) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body, separators=(",", ":")).encode()


def call_handler(handler: Handler, event: Event, context: Context | None = None) -> HandlerResponse:
    """Call ``handler`` and normalise its answer. Exceptions propagate to the caller.

    A handler may return a dict with ``statusCode``/``body``/``headers`` (python3-http), or
    any other value, which becomes a 200 with that value as (JSON) body.
    """
    result = handler(event, context or Context())
    headers: dict[str, str] = {}
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result.get("statusCode", 200))
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = _encode_body(result.get("body"), headers)
    else:
        status = 200
        body = _encode_body(result, headers)
    return HandlerResponse(status, body, headers)
