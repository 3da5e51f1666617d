"""Cost objective and constraint callables over a sample's outcomes (negative = feasible).

Outcomes are a mapping with ``cost_usd`` and ``p95_latency_s``. The objective is minimised.
A constraint is any callable ``outcomes -> float`` whose value is ``<= 0`` when met, so a
memory cap or a per-stage SLO is one more callable. :class:`LatencyConstraint` is the one
the Bayesian optimiser also knows how to model (it reads its ``target_s``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scheduler.configure.base import ConfigSample

__all__ = [
    "Constraint",
    "LatencyConstraint",
    "best_feasible",
    "cost_objective",
    "is_feasible",
    "latency_target",
    "qos_constraint",
]

Constraint = Callable[[Mapping[str, float]], float]


def cost_objective(outcomes: Mapping[str, float]) -> float:
    """The value to minimise: cost per invocation in USD."""
    return float(outcomes["cost_usd"])


@dataclass(frozen=True)
class LatencyConstraint:
    """``p95_latency_s - target_s`` (seconds; <= 0 means the QoS is met).

    Args:
        target_s: QoS target for the tail latency, seconds.
        percentile: which tail the latency outcome is (for messages).
    """

    target_s: float
    percentile: float = 95.0

    def __post_init__(self) -> None:
        if not self.target_s > 0:
            raise ValueError(f"target_s must be positive, got {self.target_s}")

    def __call__(self, outcomes: Mapping[str, float]) -> float:
        return float(outcomes["p95_latency_s"]) - self.target_s


def qos_constraint(target_s: float, percentile: float = 95.0) -> LatencyConstraint:
    """The workflow's QoS as a constraint callable."""
    return LatencyConstraint(target_s, percentile)


def is_feasible(sample: ConfigSample, constraints: Sequence[Constraint]) -> bool:
    """Whether every constraint is met (and the trial did not fail)."""
    if sample.measurement.failed:
        return False
    outcomes = sample.outcomes()
    return all(c(outcomes) <= 0 for c in constraints)


def best_feasible(
    samples: Sequence[ConfigSample], constraints: Sequence[Constraint]
) -> ConfigSample | None:
    """The cheapest feasible sample (first one on ties), or None."""
    best: ConfigSample | None = None
    for s in samples:
        if is_feasible(s, constraints) and (best is None or s.cost_usd < best.cost_usd):
            best = s
    return best


def latency_target(constraints: Sequence[Constraint]) -> float | None:
    """The tightest :class:`LatencyConstraint` target among ``constraints``, if any."""
    targets = [c.target_s for c in constraints if isinstance(c, LatencyConstraint)]
    return min(targets) if targets else None
