"""``busy_wait="queue"``: a later replica is priced by the QoS miss its absence causes: an
arrival that finds every replica busy waits for one (M/M/c), and misses only when that wait
outlasts its workflow's slack (target minus the critical path of the measured service
times). The default (``share``) is pinned by the policy's other tests."""

from __future__ import annotations

import math

import pytest

from scheduler.forecast.pool import (
    busy_wait_miss,
    replica_need,
    replica_need_and_load,
    replicas_worth_keeping,
)
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policy import Observation
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import fobs


def test_a_wait_misses_more_often_with_less_slack_more_load_fewer_replicas() -> None:
    base = busy_wait_miss(0.08, 0.05, replicas=1, load=0.1)
    assert base == pytest.approx(math.exp(-0.08 * 0.9 / 0.05))
    assert busy_wait_miss(0.02, 0.05, replicas=1, load=0.1) > base  # less slack
    assert busy_wait_miss(0.08, 0.05, replicas=1, load=0.5) > base  # more load
    assert busy_wait_miss(0.08, 0.05, replicas=2, load=0.1) < base  # more replicas
    assert busy_wait_miss(0.08, 0.05, replicas=1, load=0.1, per_replica=4) < base
    assert busy_wait_miss(0.0, 0.05, replicas=3, load=0.1) == 1.0  # no slack left
    assert busy_wait_miss(0.08, 0.05, replicas=2, load=2.0) == 1.0  # unstable queue


def test_a_later_replica_is_needed_in_the_busy_scenarios_and_priced_at_their_load() -> None:
    rates, weights = [1.0, 20.0], [0.9, 0.1]  # mostly quiet, sometimes a burst
    need, loads = replica_need_and_load(rates, weights, 0.05, horizon_s=2.0)
    assert need == replica_need(rates, weights, 0.05, horizon_s=2.0)
    mean_load = (0.9 * 1.0 + 0.1 * 20.0) * 0.05
    assert loads[0] > mean_load  # the first replica is needed a little more in the burst
    assert loads[2] > loads[1] > loads[0]  # the third almost only in the burst
    assert loads[3] == pytest.approx(20.0 * 0.05, rel=0.02)
    one, alone = replica_need_and_load([4.0], [1.0], 0.05, horizon_s=2.0)
    assert alone == pytest.approx([0.2] * len(one))  # one scenario: its own load


def test_per_replica_busy_costs_are_capped_at_the_blocked_cost() -> None:
    need = [1.0, 0.5, 0.5, 0.5]
    assert replicas_worth_keeping(need, blocked_cost=10, idle_cost=1, busy_cost=[4, 3, 1]) == 3
    assert replicas_worth_keeping(need, blocked_cost=10, idle_cost=1, busy_cost=[4]) == 4
    assert replicas_worth_keeping(need, blocked_cost=1.5, idle_cost=1, busy_cost=[99]) == 1
    assert replicas_worth_keeping(need, blocked_cost=10, idle_cost=1, busy_cost=[]) == 4


def _replicas(
    target_s: float, calls_per_tick: int, service_s: float = 0.01, busy_wait: str = "queue"
) -> int:
    """Replicas wanted for a one-stage workflow after a minute of steady calls."""
    flow = Workflow(name="solo", qos=QoS(target_s=target_s), stages=(Stage("s", "f"),))
    pol = AquatopePrewarmPolicy(
        forecaster="ewma", step_s=2.0, max_start_ratio=0, busy_wait=busy_wait
    )
    decision = None
    for t in range(1, 61):
        f = fobs(
            "f",
            arrivals=calls_per_tick,
            completions=calls_per_tick,
            mean_service_s=service_s,
            replicas_ready=2,
        )
        o = Observation(now_s=float(t), tick_s=1.0, functions={"f": f}, workflows={"solo": flow})
        decision = pol.decide(o)
    assert decision is not None
    replicas = decision.functions["f"].replicas
    assert replicas is not None
    return replicas


def test_a_short_stage_far_below_its_target_gets_no_second_replica_for_its_waits() -> None:
    # 20 calls/s of 10 ms: two at once is likely, but the wait (about 10 ms) cannot break
    # a 1 s target; the default share rule (wait / target) keeps more replicas here
    assert _replicas(target_s=1.0, calls_per_tick=20) == 1
    assert _replicas(target_s=1.0, calls_per_tick=20, busy_wait="share") >= 2
    # the same stage with 5 ms of slack: its waits do break the target
    assert _replicas(target_s=0.015, calls_per_tick=20) >= 2


def test_a_saturated_replica_gets_company_however_much_slack() -> None:
    # 150 calls/s of 10 ms is 1.5 Erlangs: one replica's queue grows without bound
    assert _replicas(target_s=1.0, calls_per_tick=150) >= 2
