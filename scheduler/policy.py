"""The ``Policy`` seam: pure decision logic from an :class:`Observation` to a :class:`Decision`.

Policies never do I/O and never read the wall clock: ``now_s`` arrives in the observation,
so the same policy runs under the live daemon (wall clock) and the simulator (sim clock).
A policy may keep incremental state between ticks; ``state_dict`` / ``load_state_dict``
let the daemon persist it and resume after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from testbed.core.config import Limits
from testbed.core.platform import Workflow

__all__ = [
    "Decision",
    "FunctionDecision",
    "FunctionObservation",
    "Observation",
    "Policy",
]


@dataclass(frozen=True)
class FunctionObservation:
    """What the daemon saw of one function during the last tick.

    Args:
        arrivals: requests that reached the gateway for this function during the tick.
        completions: requests that finished during the tick.
        errors: requests that finished with an error during the tick.
        cold_starts: requests that waited for a replica to start during the tick.
        inflight: requests in the gateway now (running + queued).
        queued: requests waiting for a free replica now.
        mean_service_s: mean latency of requests completed in the tick (None if none).
        replicas_ready / replicas_starting: replica counts now.
        target_replicas: the platform's current target.
        limits: current per-replica limits.
        max_inflight: concurrent requests one replica accepts.
        min_replicas / max_replicas: scale bounds from the labels.
        oom_kills: replicas newly seen OOM-killed during the tick (the platform's replica
            states; a memory limit below what the function needs).
        peak_rss_mb: peak resident memory of the function's replicas, when the platform
            reports it (None when it does not).
        requests: per-replica requests the function was deployed with (the stack's statement
            of what it needs; empty when none were declared).
    """

    name: str
    arrivals: int = 0
    completions: int = 0
    errors: int = 0
    cold_starts: int = 0
    inflight: int = 0
    queued: int = 0
    mean_service_s: float | None = None
    replicas_ready: int = 0
    replicas_starting: int = 0
    target_replicas: int = 0
    limits: Limits = field(default_factory=Limits)
    max_inflight: int = 1
    min_replicas: int = 0
    max_replicas: int = 20
    oom_kills: int = 0
    peak_rss_mb: float | None = None
    requests: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Observation:
    """One tick's view of the platform.

    Args:
        now_s: the clock's time at the end of the tick (seconds; wall or simulated).
        tick_s: the tick length in seconds.
        functions: per-function observations, keyed by function name.
        workflows: workflow DAGs (with QoS) deployed on the platform, keyed by name.
        workflow_latency_s: end-to-end latencies (seconds; queueing and cold starts included)
            of the workflow requests that completed during the tick, keyed by workflow, when
            the platform or load generator reports them (empty when nothing does).
        canaries: the canary (``testbed.core.canary``) of each function that has one, keyed
            by the function's name; canaries are never among ``functions``, so a policy
            that runs none never sees them.
    """

    now_s: float
    tick_s: float
    functions: Mapping[str, FunctionObservation]
    workflows: Mapping[str, Workflow] = field(default_factory=dict)
    workflow_latency_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    canaries: Mapping[str, FunctionObservation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tick_s > 0:
            raise ValueError(f"tick_s must be positive, got {self.tick_s}")


@dataclass(frozen=True)
class FunctionDecision:
    """Target for one function: warm replicas (``None`` = leave as is), optional limits,
    and optionally a canary (``testbed.core.canary``): one replica beside the function at
    ``canary`` limits that takes at most ``canary_share`` of its calls, or ``end_canary``.
    A decision that says nothing of the canary leaves it as it is."""

    replicas: int | None = None
    limits: Limits | None = None
    reason: str = ""
    canary: Limits | None = None
    canary_share: float = 0.1
    end_canary: bool = False

    def __post_init__(self) -> None:
        if self.replicas is not None and self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if not 0.0 < self.canary_share <= 1.0:
            raise ValueError(f"canary_share must be in (0, 1], got {self.canary_share}")
        if self.canary is not None and self.end_canary:
            raise ValueError("a decision cannot both run and end a canary")


@dataclass(frozen=True)
class Decision:
    """A policy's answer for one tick. An invalid decision is logged and not actuated."""

    functions: Mapping[str, FunctionDecision] = field(default_factory=dict)
    valid: bool = True
    reason: str = ""

    @classmethod
    def decline(cls, reason: str) -> Decision:
        return cls(valid=False, reason=reason)


class Policy:
    """Base class for scheduling policies.

    Subclasses set ``name`` and ``description`` and implement :meth:`decide`. Constructor
    keyword arguments are the policy's parameters (``--param k=v`` on the CLI); they must
    have defaults and type hints so the registry can list and parse them.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def decide(self, observation: Observation) -> Decision:
        """Return the decision for this tick. Must not do I/O."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state to persist between daemon restarts."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        del state
