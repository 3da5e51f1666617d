"""Helpers shared by the scheduler tests: build observations tick by tick."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.policy import Decision, FunctionObservation, Observation, Policy

__all__ = ["fobs", "obs", "step"]


def fobs(name: str = "f", **kw: Any) -> FunctionObservation:
    """A function observation with defaults (one ready replica unless told otherwise)."""
    kw.setdefault("replicas_ready", 1)
    kw.setdefault("target_replicas", kw["replicas_ready"])
    return FunctionObservation(name=name, **kw)


def obs(now_s: float, fns: Mapping[str, FunctionObservation], tick_s: float = 1.0) -> Observation:
    return Observation(now_s=now_s, tick_s=tick_s, functions=dict(fns))


def step(policy: Policy, now_s: float, tick_s: float = 1.0, **kw: Any) -> Decision:
    """One tick for the single function ``f``."""
    return policy.decide(obs(now_s, {"f": fobs("f", **kw)}, tick_s))
