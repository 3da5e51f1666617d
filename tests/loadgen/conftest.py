"""Fixtures for the load generator: no-op gateway look-alikes in their own processes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def _noop(*extra: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen.contrib.noop_gateway", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it listens (or exits)
        match = re.search(r"http://\S+", line)
        assert match, f"noop gateway did not start: {line!r}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def noop_gateway() -> Iterator[str]:
    """URL of ``loadgen.contrib.noop_gateway`` (answers at once)."""
    with _noop() as url:
        yield url


@pytest.fixture(scope="module")
def slow_gateway() -> Iterator[str]:
    """URL of a no-op gateway that holds every response for 0.5 s."""
    with _noop("--delay-s", "0.5") as url:
        yield url
