"""Helpers for simulator tests: small in-memory profiles built from distributions."""

from __future__ import annotations

from collections.abc import Iterable

from testbed.sim.distributions import Distribution
from testbed.sim.profile import FunctionProfile, Profile


def make_profile(
    names: Iterable[str],
    *,
    service: Distribution | None = None,
    cold: Distribution | None = None,
    overhead: Distribution | None = None,
    memory_mb: float | None = None,
    **extra: object,
) -> Profile:
    """One identical function profile per name."""
    fp = FunctionProfile(
        service_s=service or Distribution.constant(0.1),
        cold_start_s=cold or Distribution.constant(1.0),
        memory_mb=memory_mb,
        **extra,  # type: ignore[arg-type]
    )
    return Profile(
        functions=dict.fromkeys(names, fp),
        gateway_overhead_s=overhead or Distribution.constant(0.0),
        source="test",
    )
