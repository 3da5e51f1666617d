"""The ``Configurator`` seam: propose per-function (cpu, memory) from observed samples.

A configurator is pure logic. It sees the history of :class:`ConfigSample` (a configuration
with its measured cost and tail latency) and answers with the next configuration to try, or
``None`` when its stopping rule says the search is done. Something else (the
:func:`~scheduler.configure.loop.run_search` driver offline, the ``aquatope-config`` policy
online) runs the trials.

Every configurator **minimises** ``cost_usd`` (USD per invocation, idle time included,
DESIGN.md §8) subject to its constraints (callables over a sample's outcomes, negative or
zero = feasible), by default ``p95_latency_s - qos_target_s``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from scheduler.configure.space import Configuration
from testbed.core.errors import ConfigError

__all__ = [
    "ConfigSample",
    "Configurator",
    "Measurement",
    "QoSUnreachable",
]


class QoSUnreachable(ConfigError):
    """Even the most generous configuration misses the QoS target: the target is too tight."""


@dataclass(frozen=True)
class Measurement:
    """What one evaluation of a configuration measured.

    Args:
        cost_usd: cost per invocation in USD (reserved resources × time alive, idle included,
            divided by invocations), DESIGN.md §8 decoupled pricing.
        latency_s: tail (p95 by default) end-to-end latency in seconds; failed requests count
            at the timeout.
        noise_s: standard error of ``latency_s`` (bootstrap or repeats), 0 when unknown.
        failed: share of requests that failed (OOM, errors, timeouts) was above the tolerance.
        requests: requests sent for this measurement (0 for synthetic problems).
        error_rate: share of requests that failed.
        detail: a short human-readable note (e.g. "sim backend", "OOM in resize").
        stage_latency_s: per-function tail latency of its stage calls (seconds), when the
            evaluator can see stages; the Bayesian configurator then models each stage.
        stage_replica_s: per-function replica-seconds alive (ready or starting, busy or
            idle) per invocation, when the evaluator counts replicas per function. Cost is
            then ``sum(price(cpu, memory) * replica_s)`` with a price known in advance, so the
            Bayesian configurator models only each function's replica-seconds, over that
            function's two dimensions.
    """

    cost_usd: float
    latency_s: float
    noise_s: float = 0.0
    failed: bool = False
    requests: int = 0
    error_rate: float = 0.0
    detail: str = ""
    stage_latency_s: Mapping[str, float] = field(default_factory=dict)
    stage_replica_s: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cost_usd) and self.cost_usd >= 0):
            raise ValueError(f"cost_usd must be finite and >= 0, got {self.cost_usd}")
        if not (math.isfinite(self.latency_s) and self.latency_s > 0):
            raise ValueError(f"latency_s must be finite and > 0, got {self.latency_s}")
        if self.noise_s < 0:
            raise ValueError(f"noise_s must be >= 0, got {self.noise_s}")
        bad = [f for f, v in self.stage_replica_s.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"stage_replica_s must be finite and >= 0, got {bad[0]!r}")


@dataclass(frozen=True)
class ConfigSample:
    """One trial: a configuration and its measurement.

    Outcome names (what constraints read): ``cost_usd`` and ``p95_latency_s`` (the tail
    latency at the workflow's QoS percentile, whatever that percentile is).

    Args:
        config: the configuration tried.
        measurement: what was measured.
        source: who proposed it (``probe``, ``profile``, ``bo``, ``grid``, ...).
    """

    config: Configuration
    measurement: Measurement
    source: str = ""

    @property
    def cost_usd(self) -> float:
        return self.measurement.cost_usd

    @property
    def latency_s(self) -> float:
        return self.measurement.latency_s

    def outcomes(self) -> dict[str, float]:
        """``{"cost_usd": .., "p95_latency_s": ..}`` for constraint callables."""
        return {"cost_usd": self.cost_usd, "p95_latency_s": self.latency_s}


@runtime_checkable
class Configurator(Protocol):
    """Proposes the next configuration to evaluate from the samples seen so far.

    Implementations are deterministic given their seed and the sample sequence, do no I/O
    and read no clock.
    """

    name: str

    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        """The next configuration to try, or ``None`` to stop.

        Args:
            samples: every trial so far, oldest first (the first one is usually the
                all-max probe the driver runs).

        Returns:
            A lattice configuration of the configurator's space, or None when done.
        """
        ...
