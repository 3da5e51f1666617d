"""Pre-warmer v2 building blocks: conformal tail for small n, pool cost at zero replicas,
DAG gains without lag and fractional shifts, the idle-gap hazard and the per-replica rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from scheduler.forecast import ConformalCalibrator
from scheduler.forecast.calibrate import score_quantile
from scheduler.forecast.dag import DagPropagator
from scheduler.forecast.gaps import GapModel
from scheduler.forecast.pool import (
    imminent_need,
    pool_cost,
    replica_need,
    replicas_worth_keeping,
)
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policy import FunctionObservation, Observation
from testbed.core.platform import QoS, Stage, Workflow


def test_rare_levels_stay_apart_with_few_residuals() -> None:
    # 0.9875 and 0.9975 need rank ceil(101 q) = 100 and 101 of 100 residuals: both used to
    # be the largest residual; the tail beyond it keeps them ordered
    rng = np.random.default_rng(0)
    cal = ConformalCalibrator(levels=(0.9875, 0.9975), min_scores=12)
    for _ in range(100):
        cal.update(mean=5.0, std=1.0, observed=5.0 + float(rng.normal()))
    lo, hi = cal.upper_many(5.0, 1.0, (0.9875, 0.9975))
    top = 5.0 + max(cal._scores)
    assert top <= float(lo) < float(hi)
    scores = np.sort(rng.normal(size=300))
    assert score_quantile(scores, 0.5) == scores[math.ceil(301 * 0.5) - 1]  # in-sample rank
    assert score_quantile(np.ones(50), 0.999) == 1.0  # ties: no tail to extrapolate


def test_zero_replicas_cost_one_cold_start_plus_half_for_those_queued_behind() -> None:
    rate, exposure, cold, price = 2.0, 3.0, 1.5, 10.0
    arrives = 1.0 - math.exp(-rate * exposure)
    expected = price * arrives * cold * (1.0 + rate * cold / 2.0)
    got = pool_cost(
        0, [rate], [1.0], 0.2, exposure_s=exposure, cold_start_s=cold, delay_price=price
    )
    assert got == pytest.approx(expected)


def _chain() -> dict[str, Workflow]:
    wf = Workflow(
        name="chain",
        qos=QoS(target_s=2.0, percentile=95.0),
        stages=(Stage("a", "up"), Stage("b", "down", after=("a",))),
    )
    return {"chain": wf}


def test_fan_out_gain_has_no_one_step_lag() -> None:
    # a burst reaches the downstream in the same step (latency << step): gain stays 1
    dag = DagPropagator(_chain())
    for count in [0, 0, 10, 10, 10, 0, 0, 20, 0, 0]:
        dag.observe_step({"up": count, "down": count}, latency_steps={"up": 0.05})
        assert dag.gain("down") == pytest.approx(1.0, abs=0.05)  # the lag gave 3.0
    # a latency of 1.5 steps is learned with the same delay the propagation uses
    slow = DagPropagator(_chain())
    ups = [0, 10, 10, 10, 0, 0, 0, 0]
    downs = [0, 0, 5, 10, 10, 5, 0, 0]  # the upstream's calls, 1.5 steps later
    for u, d in zip(ups, downs, strict=True):
        slow.observe_step({"up": u, "down": d}, latency_steps={"up": 1.5})
    assert slow.gain("down") == pytest.approx(1.0, abs=0.02)


def test_propagation_shift_is_the_fractional_latency() -> None:
    dag = DagPropagator(_chain())
    out = dag.propagate({"up": np.array([0.0, 10.0, 10.0, 10.0])}, shift_steps={"up": 1.5})
    assert out["down"].tolist() == pytest.approx([0.0, 0.0, 5.0, 10.0])


def test_gap_model_predicts_a_timer_firing_and_nothing_between() -> None:
    m = GapModel()
    for k in range(6):
        for t in (k * 60.0, k * 60.0 + 1.0):  # each firing keeps the function busy 2 ticks
            m.observe(t, active=True, tick_s=1.0)
    last = 5 * 60.0 + 1.0
    assert m.probability(now_s=last + 20.0, horizon_s=4.0) == (0.0, 5)
    assert m.probability(now_s=last + 56.0, horizon_s=4.0) == (1.0, 5)
    assert m.probability(now_s=last + 200.0, horizon_s=4.0) is None  # beyond every gap


def test_replica_need_matches_poisson_and_decreases() -> None:
    need = replica_need([0.5], [1.0], 1e-6, horizon_s=2.0)
    assert need[0] == pytest.approx(1.0 - math.exp(-1.0), rel=1e-4)
    busy = replica_need([4.0, 0.1], [0.5, 0.5], 1.0, horizon_s=2.0, max_inflight=2)
    assert all(a >= b for a, b in itertools.pairwise(busy)) and busy[0] > busy[3]
    assert replica_need([0.0], [1.0], 1.0, horizon_s=2.0) == []


def test_per_replica_rule_charges_starts_only_for_new_replicas() -> None:
    need = [0.9, 0.5, 0.2, 0.05]
    assert replicas_worth_keeping(need, blocked_cost=10.0, idle_cost=1.5) == 3
    assert replicas_worth_keeping(need, blocked_cost=10.0, idle_cost=1.5, start_cost=4.0) == 1
    kept = replicas_worth_keeping(need, blocked_cost=10.0, idle_cost=1.5, current=3, start_cost=4)
    assert kept == 3
    assert replicas_worth_keeping(need, blocked_cost=1.0, idle_cost=1.5) == 0


def test_replicas_beyond_the_first_are_priced_by_the_wait_for_a_busy_one() -> None:
    # without replica 1 an arrival waits for a cold start; without replica 2 it waits for
    # replica 1 to finish a call: a shorter delay, so replica 2 must be likelier to pay off
    need = [0.9, 0.5, 0.2]
    assert replicas_worth_keeping(need, blocked_cost=10.0, idle_cost=1.5, busy_cost=4.0) == 2
    assert replicas_worth_keeping(need, blocked_cost=10.0, idle_cost=1.5, busy_cost=2.0) == 1
    # the wait is never priced above a cold start
    assert replicas_worth_keeping(need, blocked_cost=10.0, idle_cost=1.5, busy_cost=99.0) == 3


def test_prewarm_keeps_one_replica_for_short_calls_that_rarely_overlap() -> None:
    # 12 calls a minute of 30 ms each against a 150 ms QoS: a second replica would save a
    # 30 ms wait now and then, not a cold start; at a price that keeps the first replica
    # warm, the second is not worth its idle time
    qos = Workflow(name="w", qos=QoS(target_s=0.15), stages=(Stage("f", "f"),))
    pol = AquatopePrewarmPolicy(forecaster="ewma", step_s=10.0, miss_price_s=300.0, gaps=False)
    rng = np.random.default_rng(0)
    kept = []
    for t in range(1, 601):
        f = FunctionObservation(
            name="f",
            arrivals=int(rng.poisson(0.2)),
            completions=1,
            mean_service_s=0.03,
            replicas_ready=kept[-1] if kept else 1,
            target_replicas=kept[-1] if kept else 1,
        )
        d = pol.decide(
            Observation(now_s=float(t), tick_s=1.0, functions={"f": f}, workflows={"w": qos})
        )
        kept.append(d.functions["f"].replicas or 0)
    assert kept[-300:] == [1] * 300


def test_imminent_calls_are_sure_only_as_far_as_they_are_certain() -> None:
    # a fan-out of three from one running call is three sure calls
    assert imminent_need([(1, 3.0)]) == [1.0, 1.0, 1.0]
    # a branch taken by one call in five: a 0.2 chance per running call, not a sure replica
    assert imminent_need([(1, 0.2)]) == pytest.approx([0.2])
    two = imminent_need([(2, 0.5)])  # two coin flips: P(>= 1) = 0.75, P(2) = 0.25
    assert two == pytest.approx([0.75, 0.25])
    # 1.5 each from two calls: two sure calls, then up to two more by chance
    assert imminent_need([(2, 1.5)]) == pytest.approx([1.0, 1.0, 0.75, 0.25])
    # sources add up; two calls per replica regroup the concurrency
    mixed = imminent_need([(1, 1.0), (3, 0.5)], max_inflight=2)
    brute: dict[int, float] = {}
    for flips in itertools.product((0, 1), repeat=3):
        brute[1 + sum(flips)] = brute.get(1 + sum(flips), 0.0) + 0.125
    want = [sum(p for n, p in brute.items() if n >= 2 * (k - 1) + 1) for k in (1, 2)]
    assert mixed == pytest.approx(want)
    assert imminent_need([(1, 3.0)], max_replicas=2) == [1.0, 1.0]
    assert imminent_need([(0, 5.0), (2, 0.0)]) == []
    with pytest.raises(ValueError, match="max_inflight"):
        imminent_need([(1, 1.0)], max_inflight=0)


def _replicas_behind_entry(
    price: float, entry_s: float, *, of: str = "mid", queued: bool = False
) -> int:
    """``of``'s replicas in entry -> mid (0.2 s) -> last while one call is at entry: running
    on its replica, or (``queued``) waiting for it to start. Starts take 1 s (the default),
    so mid's and last's look-ahead is 2 s."""
    wf = Workflow(
        name="pipe",
        qos=QoS(target_s=5.0, percentile=95.0),
        stages=(
            Stage("a", "entry"),
            Stage("b", "mid", after=("a",)),
            Stage("c", "last", after=("b",)),
        ),
    )
    pol = AquatopePrewarmPolicy(forecaster="ewma", miss_price_s=price, max_start_ratio=0)
    pol._fn("entry").service_s = entry_s
    pol._fn("mid").service_s = 0.2
    entry = FunctionObservation(name="entry", inflight=1, replicas_ready=1)
    if queued:
        entry = FunctionObservation(
            name="entry", inflight=1, queued=1, replicas_ready=0, replicas_starting=1
        )
    fns = {
        "entry": entry,
        "mid": FunctionObservation(name="mid", replicas_ready=0),
        "last": FunctionObservation(name="last", replicas_ready=0),
    }
    d = pol.decide(Observation(now_s=1.0, tick_s=1.0, functions=fns, workflows={"p": wf}))
    return d.functions[of].replicas or 0


def test_a_stage_behind_a_running_call_is_started_for_the_call_it_will_get() -> None:
    # the 1 s entry call finishes within the 2 s look-ahead and then calls mid: a sure call,
    # worth a start from a price of about 20 s (the overlap of the two service times, 0.2,
    # used to be taken for the chance of a call: nothing started below a price of 100 s)
    assert _replicas_behind_entry(10.0, entry_s=1.0) == 0
    assert _replicas_behind_entry(30.0, entry_s=1.0) == 1
    assert _replicas_behind_entry(50.0, entry_s=1.0) == 1


def test_a_long_upstream_call_is_a_chance_of_a_call_within_the_lookahead() -> None:
    # a 20 s entry call ends within the next 2 s with probability 0.1: priced, not sure
    assert _replicas_behind_entry(50.0, entry_s=20.0) == 0
    assert _replicas_behind_entry(150.0, entry_s=20.0) == 0
    assert _replicas_behind_entry(3000.0, entry_s=20.0) == 1


def test_a_call_two_stages_up_starts_the_stage_it_will_reach() -> None:
    # entry's 1 s call, then mid's 0.2 s: last is called within its 2 s look-ahead for sure
    # (only calls running in a direct upstream used to count: nothing was started here)
    assert _replicas_behind_entry(50.0, entry_s=1.0, of="last") == 1
    # a 20 s entry call reaches last within 2 s with probability (2 - 0.2) / 20 = 0.09
    assert _replicas_behind_entry(50.0, entry_s=20.0, of="last") == 0
    assert _replicas_behind_entry(3000.0, entry_s=20.0, of="last") == 1


def test_a_call_queued_upstream_counts_once_its_replica_will_be_up() -> None:
    # entry's call waits for entry's replica (1 s to start), then runs 1 s: mid is called
    # within its 2 s look-ahead, and is started now rather than once entry's call runs
    assert _replicas_behind_entry(50.0, entry_s=1.0, queued=True) == 1
    # a 10 s call after the 1 s start: within 2 s with probability (2 - 1) / 10 = 0.1
    assert _replicas_behind_entry(50.0, entry_s=10.0, queued=True) == 0
    assert _replicas_behind_entry(3000.0, entry_s=10.0, queued=True) == 1


def test_many_running_calls_are_cheap_and_exact_up_to_the_replica_cap() -> None:
    # 400 coin flips: only P(>= 1) .. P(>= 3) matter with three replicas at most
    capped = imminent_need([(400, 0.5)], max_replicas=3)
    assert capped == pytest.approx([1.0, 1.0, 1.0])
    few = imminent_need([(3, 0.5)], max_replicas=2)
    assert few == pytest.approx([0.875, 0.5])
    assert imminent_need([(3, 0.5)], max_replicas=2, max_inflight=2) == pytest.approx(
        [0.875, 0.125]
    )
