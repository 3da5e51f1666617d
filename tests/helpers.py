"""Test helpers importable from any test module (``from tests.helpers import wait_until``)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TypeVar

import pytest

__all__ = ["bench_module", "cli_with_ctrl_c", "in_ci", "missing", "needs", "wait_until"]

REPO = Path(__file__).resolve().parents[1]

T = TypeVar("T")


def cli_with_ctrl_c(*args: str) -> list[str]:
    """The argv of ``python -m testbed.cli ARGS`` in a process that turns SIGINT into
    ``KeyboardInterrupt`` even when the suite itself runs with SIGINT ignored (a background
    job of a non-interactive shell): Python installs no handler for an ignored SIGINT, and a
    test's Ctrl-C would be lost."""
    code = (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('testbed.cli', run_name='__main__')"
    )
    return [sys.executable, "-c", code, *args]


def bench_module(name: str) -> ModuleType:
    """``bench/NAME.py`` imported as module ``NAME`` (the bench scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def wait_until(predicate: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


def in_ci() -> bool:
    """True when ``CI`` is set to a true value (``true``, ``1``, ``yes``), as CI services do."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """A component a test needs is absent: fail in CI (which must provide it), else skip.

    Raises:
        pytest.fail.Exception: in CI.
        pytest.skip.Exception: elsewhere.
    """
    if in_ci():
        pytest.fail(f"CI must provide this: {reason}", pytrace=False)
    pytest.skip(reason)


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """Mark a test that needs a component: skipped with ``reason`` where it is absent, but a
    failure in CI (see :func:`missing`; checked in ``tests/conftest.py`` at setup)."""
    return pytest.mark.needs(available=available, reason=reason)
