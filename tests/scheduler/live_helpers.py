"""Helpers for scheduler tests against the real local backend (gateway + process replicas)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from testbed.core.platform import FunctionSpec, Platform

__all__ = ["deploy_noop", "wait_for", "write_noop"]

T = TypeVar("T")

NOOP = """def handle(event, context):
    return {"statusCode": 200, "body": "ok"}
"""


def write_noop(root: Path) -> Path:
    """A tiny python3-http handler directory under ``root``."""
    handler_dir = root / "noop"
    handler_dir.mkdir(parents=True, exist_ok=True)
    (handler_dir / "handler.py").write_text(NOOP)
    return handler_dir


def deploy_noop(platform: Platform, name: str, handler_dir: Path, **labels: str) -> None:
    platform.deploy(FunctionSpec(name=name, handler=str(handler_dir), labels=labels))


def wait_for(check: Callable[[], T], *, timeout_s: float = 20.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, against a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}")
        time.sleep(0.05)
