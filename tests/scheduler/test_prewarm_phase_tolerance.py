"""The periodic experts' jitter tolerance: on exact timers a widened window loses the mixture
to the idle-gap hazard, and ``phase_tol_s=0`` gives it back to the periodic expert."""

from __future__ import annotations

import re

import pytest

from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policies.prewarm_config import PrewarmConfig
from tests.scheduler.sched_helpers import step

MINUTES = 150


def _called(minute: int) -> bool:
    """Second 30 of every odd minute, and of the even minutes 4, 12, 20, ... (period 8 min):
    the timers of the headline grid's ml-pipeline, exact to the second."""
    return minute % 2 == 1 or minute % 8 == 4


def _first_replica_p(tol_s: float | tuple[float, ...], ask_at_s: list[float]) -> dict[float, float]:
    """Drive the policy tick by tick over the timers; the first replica's probability (its
    decision's ``P1``) at each time asked."""
    policy = AquatopePrewarmPolicy(forecaster="ewma", miss_price_s=300.0, phase_tol_s=tol_s)
    out: dict[float, float] = {}
    for t in range(1, MINUTES * 60 + 1):
        call = t % 60 == 30 and _called(t // 60)
        decision = step(policy, float(t), arrivals=int(call), completions=int(call))
        if float(t) in ask_at_s:
            found = re.search(r"P1=([0-9.]+)", decision.functions["f"].reason)
            assert found is not None
            out[float(t)] = float(found.group(1))
    return out


def test_exact_timers_are_read_by_the_periodic_expert_only_without_the_jitter_margin() -> None:
    """Two seconds before second 30 of minutes 146 (even, no call) and 148 (4 mod 8, a call):
    without the margin the 480 s expert tells them apart (measured: 0.006 and 0.92); with
    the 1 s margin the mixture leans on the idle-gap hazard, which sees 60 s since the last
    call either way."""
    quiet, busy = 146 * 60 + 28.0, 148 * 60 + 28.0
    exact = _first_replica_p(0.0, [quiet, busy])
    assert exact[quiet] < 0.05 and exact[busy] > 0.5, exact
    widened = _first_replica_p(1.0, [quiet, busy])  # measured: 0.40 and 0.39
    assert widened[quiet] > 0.2, widened  # a warm-up for a call that does not come
    assert abs(widened[quiet] - widened[busy]) < 0.1  # the two minutes look alike
    both = _first_replica_p((0.0, 1.0), [quiet, busy])  # each period at both widths
    assert both[quiet] < 0.05 and both[busy] > 0.5, both  # the mixture picks the exact ones


def test_the_tolerance_is_checked() -> None:
    assert PrewarmConfig().phase_tol_s == 1.0
    with pytest.raises(ValueError, match=r"phase_tol_s must be >= 0"):
        PrewarmConfig(phase_tol_s=-0.5)
    assert PrewarmConfig(phase_tol_s=[0, 1.5]).phase_tol_s == (0.0, 1.5)  # YAML gives lists
    for bad in ([], [0.0, -1.0], "1", [None]):
        with pytest.raises(ValueError, match=r"phase_tol_s must be >= 0"):
            PrewarmConfig(phase_tol_s=bad)  # type: ignore[arg-type]


def test_the_shrinkage_towards_the_base_rate_is_an_option() -> None:
    # alpha pseudo-cycles: an expert with no call in its K past windows says
    # alpha x base / (K + alpha), the floor under the first replica's probability
    assert AquatopePrewarmPolicy()._fn("f").periodic.alphas == (1.0,)
    policy = AquatopePrewarmPolicy(phase_alpha=0.1, phase_tol_s=[0.0, 1.0])
    experts = policy._fn("f").periodic
    assert experts.alphas == (0.1,) and experts.tols_s == (1.0, 0.0)
    # a list: one expert per shrinkage, each width and period (YAML gives lists)
    both = AquatopePrewarmPolicy(phase_alpha=[1, 0.1])._fn("f").periodic
    assert both.alphas == (1.0, 0.1) and "period-60s/a0.1" in both.names
    assert len(both.names) == 1 + 2 * len(both.periods_s)
    for bad in (0.0, -1.0, [], [1.0, 0.0], "1"):
        with pytest.raises(ValueError, match=r"phase_alpha must be > 0"):
            PrewarmConfig(phase_alpha=bad)  # type: ignore[arg-type]
