"""The canary's routing rule and spec (``testbed.core.canary``), on its own."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.core.canary import CanaryRoute, canary_of, canary_spec
from testbed.core.config import Limits
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec


@given(
    share=st.floats(min_value=0.01, max_value=1.0),
    free=st.lists(st.booleans(), min_size=1, max_size=300),
)
def test_a_canary_never_takes_more_than_its_share(share: float, free: list[bool]) -> None:
    route = CanaryRoute("f-canary", share)
    for n, is_free in enumerate(free, start=1):
        took = route.take(is_free)
        assert not took or is_free  # never a call that would wait for it
        assert route.routed <= math.floor(share * n + 1e-9)
    assert route.calls == len(free)


@given(share=st.floats(min_value=0.01, max_value=1.0), n=st.integers(1, 300))
def test_a_canary_always_free_takes_exactly_its_share(share: float, n: int) -> None:
    route = CanaryRoute("f-canary", share)
    for _ in range(n):
        route.take(True)
    assert route.routed == math.floor(share * n + 1e-9)


def test_the_spec_keeps_the_code_and_takes_the_trials_limits() -> None:
    primary = FunctionSpec(
        name="f",
        image="img",
        env={"A": "1"},
        labels={"com.openfaas.scale.min": "2"},
        limits=Limits(cpu_cores=1.0, memory_mb=512),
        max_inflight=3,
    )
    canary = canary_spec(primary, Limits(memory_mb=256), share=0.2)
    assert (canary.name, canary.image, dict(canary.env), canary.max_inflight) == (
        "f-canary",
        "img",
        {"A": "1"},
        3,
    )
    assert canary.limits == Limits(cpu_cores=1.0, memory_mb=256)
    assert (canary.scale_bounds.min, canary.scale_bounds.max) == (1, 1)
    assert canary_of(canary) == ("f", 0.2) and canary_of(primary) is None


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"com.aquatope.canary-of": "f"}, "needs both labels"),
        ({"com.aquatope.canary-of": "g", "com.aquatope.canary-share": "0.1"}, "must be named"),
        ({"com.aquatope.canary-of": "f", "com.aquatope.canary-share": "nan"}, r"in \(0, 1\]"),
        ({"com.aquatope.canary-of": "f", "com.aquatope.canary-share": "-1"}, r"in \(0, 1\]"),
    ],
)
def test_inconsistent_labels_are_one_line_errors(labels: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        canary_of(FunctionSpec(name="f-canary", labels=labels))


def test_a_name_too_long_for_a_canary_is_refused() -> None:
    with pytest.raises(ConfigError, match="1-63 chars"):
        canary_spec(FunctionSpec(name="f" * 60), Limits(memory_mb=128))
