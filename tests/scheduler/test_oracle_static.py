"""oracle and static-pool: the oracle bound holds against every baseline; static pool sanity."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.policies.oracle import OraclePolicy, assign_slots
from scheduler.policies.static_pool import StaticPoolPolicy
from scheduler.policy import Observation
from scheduler.registry import available_policies, create_policy
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import (
    LONG_THEN_BRANCHES_SERVICE_S,
    fobs,
    long_then_branches,
    replicas_at,
    step,
)
from tests.scheduler.sim_scenarios import run_scenario

SERVICE_S = 0.5
COLD_S = 1.5
UNTIL_S = 900.0


def _arrivals() -> list[float]:
    """Timers every 45 s, three bursts of 12 calls in 20 s, 15 calls at random (seeded)."""
    rng = np.random.default_rng(3)
    times = list(np.arange(5.0, UNTIL_S, 45.0))
    for start in (100.0, 400.0, 650.0):
        times += list(start + np.sort(rng.uniform(0, 20, 12)))
    times += list(rng.uniform(0, UNTIL_S, 15))
    return sorted(float(t) for t in times)


def _point(name: str, params: dict) -> tuple[float, int]:
    run = run_scenario(
        create_policy(name, params),
        {"f": _arrivals()},
        UNTIL_S,
        service_s=SERVICE_S,
        cold_start_s=COLD_S,
    )
    return run.idle_replica_s, run.cold_starts


def _envelope_at(points: list[tuple[float, int]], idle_s: float) -> int:
    """Fewest cold starts among points spending at most ``idle_s`` (the cheapest point's
    cold starts when none is that cheap)."""
    within = [c for i, c in points if i <= idle_s + 1e-9]
    return min(within) if within else min(points)[1]


def test_assign_slots_uses_lowest_free_slot() -> None:
    slots = assign_slots([0.0, 0.2, 0.4, 2.0, 2.1, 5.0], hold_s=1.0)
    assert [s.tolist() for s in slots] == [[0.0, 2.0, 5.0], [0.2, 2.1], [0.4]]


def test_oracle_is_never_beaten_at_equal_or_smaller_idle() -> None:
    arrivals = {"f": _arrivals()}
    oracle = [
        _point("oracle", {"arrivals": arrivals, "idle_budget_s": b, "lead_s": 2.0})
        for b in (0.0, 30.0, 60.0, 100.0, 150.0, 1e9)
    ]
    assert oracle[-1][1] == 0  # with the whole budget every call is served warm
    assert [c for _, c in oracle] == sorted((c for _, c in oracle), reverse=True)
    baselines = (
        [("keep-alive", {"window_s": w}) for w in (5.0, 10.0, 30.0, 60.0, 300.0)]
        + [("static-pool", {"replicas": n}) for n in (0, 1, 2)]
        + [("hybrid-histogram", {}), ("knative-kpa", {})]
    )
    for name, params in baselines:
        idle_s, cold = _point(name, params)
        assert _envelope_at(oracle, idle_s) <= cold, (name, params, idle_s, cold, oracle)


def test_oracle_expands_workflows_and_prewarms_just_in_time() -> None:
    stages = (Stage("a", "a"), Stage("b", "b", after=("a",)))
    wf = Workflow(name="w", qos=QoS(target_s=1.0), stages=stages)
    policy = OraclePolicy(arrivals={"w": [100.0]}, lead_s=5.0, hold_s=1.0)

    def at(t: float) -> dict[str, int | None]:
        o = Observation(
            now_s=t,
            tick_s=1.0,
            functions={n: fobs(n, replicas_ready=0) for n in ("a", "b", "c")},
            workflows={"w": wf},
        )
        return {n: d.replicas for n, d in policy.decide(o).functions.items()}

    assert at(93.0) == {"a": 0, "b": 0, "c": 0}  # 7 s ahead > lead 5 s + tick 1 s
    assert at(94.0) == {"a": 1, "b": 1, "c": 0}
    assert at(100.5) == {"a": 1, "b": 1, "c": 0}  # held for hold_s after the call
    assert at(101.0) == {"a": 0, "b": 0, "c": 0}


def test_oracle_calls_each_stage_after_its_upstream_service() -> None:
    """A 2 s first stage: the second stage is used 2 s after the request, its replica is
    started a lead ahead of that and held through its own 3 s service."""
    wf = long_then_branches(9.0)
    service = LONG_THEN_BRANCHES_SERVICE_S
    policy = OraclePolicy(
        arrivals={"w": [100.0]}, lead_s=5.0, hold_s=1.0, service_s_by_function=service
    )
    assert policy.stage_offsets_s(wf) == {"long": 0.0, "x": 2.0, "y": 2.0, "join": 5.0}

    def at(t: float) -> dict[str, int | None]:
        return replicas_at(policy, wf, t)

    assert at(94.0) == {"long": 1, "x": 0, "y": 0, "join": 0}
    assert at(96.0) == {"long": 1, "x": 1, "y": 1, "join": 0}  # 6 s before their call at 102
    assert at(99.0) == {"long": 1, "x": 1, "y": 1, "join": 1}  # join is called at 105
    assert at(102.5) == {"long": 0, "x": 1, "y": 1, "join": 1}  # long's 2 s are over
    assert at(103.5) == {"long": 0, "x": 1, "y": 0, "join": 1}  # y held 1 s, x its 3 s
    assert at(105.5) == {"long": 0, "x": 0, "y": 0, "join": 1}
    assert at(106.0) == {"long": 0, "x": 0, "y": 0, "join": 0}


def test_the_runner_gives_the_oracle_the_profile_service_times() -> None:
    from testbed.experiment.policies import create_run_policy, profile_service_s
    from testbed.sim.profile import load_profile

    service = profile_service_s(load_profile(check_conditions=False))
    assert 1.0 < service["keyframe-extractor"] < 4.0
    assert service["noop"] < 0.05
    oracle = create_run_policy("oracle", {}, arrivals_s={}, service_s=service)
    assert isinstance(oracle, OraclePolicy) and oracle.service_s == service
    mine = create_run_policy("oracle", {"service_s_by_function": {"a": 1.0}}, service_s=service)
    assert isinstance(mine, OraclePolicy) and mine.service_s == {"a": 1.0}  # params win
    # policies that do not take it are built as before
    assert create_run_policy("keep-alive", {}, service_s=service).name == "keep-alive"


def test_oracle_never_releases_replicas_serving_or_queued() -> None:
    policy = OraclePolicy(arrivals={}, idle_budget_s=0.0)
    d = step(policy, 10.0, inflight=3, queued=2, replicas_ready=1, replicas_starting=2)
    assert d.functions["f"].replicas == 3


def test_oracle_does_not_start_a_replica_per_queued_request() -> None:
    # one request running, four queued behind the replica the platform is starting: the
    # oracle keeps those two, it does not start one replica for each queued request (a start
    # storm that slows every start on a small host)
    policy = OraclePolicy(arrivals={}, idle_budget_s=0.0)
    d = step(policy, 10.0, inflight=5, queued=4, replicas_ready=1, replicas_starting=1)
    assert d.functions["f"].replicas == 2


def test_static_pool_holds_n_and_keeps_replicas_for_queued_requests() -> None:
    assert "replicas" in available_policies()["static-pool"].parameters
    policy = create_policy("static-pool", {"replicas": "2"})
    assert isinstance(policy, StaticPoolPolicy) and policy.replicas == 2
    assert step(policy, 0.0, replicas_ready=0).functions["f"].replicas == 2
    assert (
        step(policy, 1.0, arrivals=50, inflight=9, queued=5, replicas_ready=4)
        .functions["f"]
        .replicas
        == 4
    )
    assert step(policy, 2.0, replicas_ready=4).functions["f"].replicas == 2
    with pytest.raises(ValueError, match="static-pool"):
        StaticPoolPolicy(replicas=-1)


def test_static_pool_in_the_simulator_trades_idle_for_cold_starts() -> None:
    points = [_point("static-pool", {"replicas": n}) for n in (0, 1, 2, 3)]
    idle = [i for i, _ in points]
    cold = [c for _, c in points]
    assert idle == sorted(idle) and cold == sorted(cold, reverse=True)
    # a pool of n idles about n replicas for the whole run (less the time they serve)
    for n, (i, _) in enumerate(points):
        if n:
            assert n * UNTIL_S * 0.9 < i <= n * UNTIL_S
    assert cold[3] == 0


def test_calls_that_do_not_overlap_in_service_share_one_replica() -> None:
    """Two calls of a 35 ms function half a second apart never run at once: one replica
    serves both. Partitioning by the 1 s keep time planned a second replica, whose start
    only took CPU from the calls (what made the oracle dearer than always-on on dense
    traces)."""
    wf = Workflow(name="w", stages=(Stage(name="s", function="f"),), qos=QoS(target_s=0.15))
    policy = OraclePolicy(
        arrivals={"w": [100.0, 100.5]}, lead_s=5.0, hold_s=1.0, service_s_by_function={"f": 0.035}
    )
    assert [replicas_at(policy, wf, t)["f"] for t in (95.0, 100.2, 101.2, 102.0)] == [1, 1, 1, 0]
    assert policy.planned_cost_s({"w": wf}, tick_s=1.0) == pytest.approx(6.0)  # one lead + tick
    assert policy.planned_idle_s == pytest.approx(6.0)  # the plan it acts on: the same
    overlapping = OraclePolicy(
        arrivals={"w": [100.0, 100.02]}, lead_s=5.0, hold_s=1.0, service_s_by_function={"f": 0.035}
    )
    assert replicas_at(overlapping, wf, 99.0)["f"] == 2  # these two do overlap
