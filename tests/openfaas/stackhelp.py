"""Start the OpenFaaS CE stack for a test and hand out a client of its real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.errors import BackendUnavailable
from testbed.openfaas_ce import AlertRules, OpenFaaSStack, StackOptions, start_stack
from testbed.openfaas_ce.source import find_source


@contextmanager
def openfaas_stack(
    home: Path, *, rules: AlertRules | None = None, backend: str = "local"
) -> Iterator[OpenFaaSStack]:
    """A running stack in ``home``, stopped on exit. Skips only when the third-party gateway
    source archive is absent; any other missing piece fails the test."""
    try:
        find_source()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    options = StackOptions(home=home, rules=rules or AlertRules(), backend=backend)
    with start_stack(options) as stack:
        yield stack


@contextmanager
def openfaas_platform(
    home: Path, *, rules: AlertRules | None = None, backend: str = "local"
) -> Iterator[OpenFaaSPlatform]:
    """A Platform client of the real OpenFaaS gateway of a fresh stack in ``home``."""
    with openfaas_stack(home, rules=rules, backend=backend) as stack:
        password = (home / "basic-auth-password").read_text().strip()
        with OpenFaaSPlatform(stack.url, password=password, metrics_url=stack.metrics_url) as p:
            yield p
