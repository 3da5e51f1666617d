"""The oracle's edges: its options, slot assignment at equal times, the cost of each use and
which uses a budget covers (worked out by hand from the module docstring: a use's cost is
``min(gap since the slot's previous use - hold, lead + tick)``, the first use of a slot
costs ``lead + tick``; uses are covered cheapest first, ties by time), per-function leads,
holds and service times, and the replica floor it keeps for requests in the gateway."""

from __future__ import annotations

import math
from typing import Any

import pytest

from scheduler.policies.oracle import OraclePolicy, assign_slots
from scheduler.policy import Observation
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import fobs, step


def _at(policy: OraclePolicy, t: float, names: tuple[str, ...], **kw: Any) -> dict[str, int]:
    o = Observation(
        now_s=t, tick_s=1.0, functions={n: fobs(n, replicas_ready=0, **kw) for n in names}
    )
    return {n: d.replicas for n, d in policy.decide(o).functions.items()}


@pytest.mark.parametrize(
    "bad",
    [
        {"idle_budget_s": -1.0},
        {"idle_budget_s": math.nan},
        {"lead_s": -0.5},
        {"lead_s": math.nan},
        {"hold_s": 0.0},
        {"hold_s": -1.0},
    ],
)
def test_negative_or_missing_options_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"^oracle: need idle_budget_s >= 0, lead_s >= 0"):
        OraclePolicy(**bad)


def test_per_function_leads_and_service_times_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=r"^oracle: lead_s_by_function values must be >= 0"):
        OraclePolicy(lead_s_by_function={"f": 1.0, "g": -0.1})
    with pytest.raises(ValueError, match=r"^oracle: lead_s_by_function"):
        OraclePolicy(lead_s_by_function={"f": math.nan})
    with pytest.raises(ValueError, match=r"^oracle: service_s_by_function values must be >= 0"):
        OraclePolicy(service_s_by_function={"f": -1.0})
    # zero (and fractions of a second) are fine everywhere
    ok = OraclePolicy(
        idle_budget_s=0.0,
        lead_s=0.0,
        hold_s=0.001,
        lead_s_by_function={"f": 0.0, "g": 0.5},
        service_s_by_function={"f": 0.0, "g": 0.25},
    )
    assert ok.leads == {"f": 0.0, "g": 0.5}
    assert ok.service_s == {"f": 0.0, "g": 0.25}
    assert ok.planned_idle_s == 0.0  # nothing planned before the first decision


def test_defaults_start_five_seconds_plus_a_tick_ahead_and_hold_one_second() -> None:
    policy = OraclePolicy(arrivals={"f": [100.0]})
    assert _at(policy, 93.0, ("f",)) == {"f": 0}
    assert _at(policy, 94.0, ("f",)) == {"f": 1}
    assert _at(policy, 100.9, ("f",)) == {"f": 1}
    assert _at(policy, 101.0, ("f",)) == {"f": 0}


def test_a_slot_free_at_the_arrival_is_reused_and_the_lowest_free_one_wins() -> None:
    # 1.0 arrives as slot 1's first use ends; at 2.0 slot 1 (free from 2.0) and slot 2
    # (free from 1.5) are both free: the lowest takes it
    slots = assign_slots([2.0, 0.0, 1.0, 0.5], hold_s=1.0)
    assert [s.tolist() for s in slots] == [[0.0, 1.0, 2.0], [0.5]]


def _costs_policy(budget: float) -> OraclePolicy:
    """f: uses at 100, 103, 200 (one slot, held 1.5 s by its service time), lead 5;
    g: one use at 50, lead 2. Costs: f 6, 1.5, 6; g 3 (total 16.5)."""
    return OraclePolicy(
        arrivals={"f": [100.0, 103.0, 200.0], "g": [50.0]},
        idle_budget_s=budget,
        lead_s=5.0,
        hold_s=1.0,
        lead_s_by_function={"g": 2.0},
        service_s_by_function={"f": 1.5},
    )


def test_planned_cost_is_the_sum_of_every_use_cost() -> None:
    assert _costs_policy(0.0).planned_cost_s({}, 1.0) == pytest.approx(6 + 1.5 + 6 + 3)
    assert _costs_policy(0.0).planned_cost_s({}, 2.0) == pytest.approx(7 + 1.5 + 7 + 4)


@pytest.mark.parametrize(
    ("budget", "planned"),
    [
        (0.0, 0.0),
        (1.5, 1.5),  # exactly the cheapest use (f at 103)
        (4.4, 1.5),  # g's 3 s do not fit any more
        (4.5, 4.5),
        (10.5, 10.5),  # then f at 100 (ties with f at 200 go by time)
        (16.4, 10.5),
        (16.5, 16.5),
    ],
)
def test_a_budget_covers_the_cheapest_uses_first(budget: float, planned: float) -> None:
    policy = _costs_policy(budget)
    _at(policy, 0.0, ("f", "g"))
    assert policy.planned_idle_s == pytest.approx(planned)


def test_each_function_has_its_own_lead_and_every_arrival_key_is_read() -> None:
    # three functions called once at 100; c starts in 1 s, so its use costs 2 s: the only
    # one a 2 s budget covers
    policy = OraclePolicy(
        arrivals={"a": [100.0], "b": [100.0], "c": [100.0]},
        idle_budget_s=2.0,
        lead_s=5.0,
        lead_s_by_function={"c": 1.0},
    )
    names = ("a", "b", "c")
    assert _at(policy, 94.0, names) == {"a": 0, "b": 0, "c": 0}
    assert _at(policy, 97.0, names) == {"a": 0, "b": 0, "c": 0}
    assert _at(policy, 98.0, names) == {"a": 0, "b": 0, "c": 1}
    assert _at(policy, 100.5, names) == {"a": 0, "b": 0, "c": 1}
    assert policy.planned_idle_s == pytest.approx(2.0)


def test_a_use_holds_its_replica_for_the_longer_of_hold_and_service() -> None:
    policy = OraclePolicy(
        arrivals={"f": [100.0], "g": [100.0, 101.0]},
        lead_s=5.0,
        hold_s=0.5,
        service_s_by_function={"g": 3.0},
    )
    names = ("f", "g")
    # g's second call comes while its first runs: two slots
    assert _at(policy, 99.0, names) == {"f": 1, "g": 2}
    assert _at(policy, 100.4, names) == {"f": 1, "g": 2}
    assert _at(policy, 100.6, names) == {"f": 0, "g": 2}  # f (no service time) held 0.5 s
    assert _at(policy, 102.9, names) == {"f": 0, "g": 2}
    assert _at(policy, 103.5, names) == {"f": 0, "g": 1}
    assert _at(policy, 104.0, names) == {"f": 0, "g": 0}


def test_a_covered_use_is_held_even_when_the_next_one_is_served_cold() -> None:
    # uses at 100 and 200 cost 6 s each; a 6 s budget covers the first (earlier) only
    policy = OraclePolicy(arrivals={"f": [100.0, 200.0]}, idle_budget_s=6.0, lead_s=5.0)
    assert _at(policy, 94.0, ("f",)) == {"f": 1}
    assert _at(policy, 100.5, ("f",)) == {"f": 1}
    assert _at(policy, 101.0, ("f",)) == {"f": 0}
    assert _at(policy, 195.0, ("f",)) == {"f": 0}
    assert _at(policy, 200.0, ("f",)) == {"f": 0}


def test_a_cold_use_keeps_its_replica_for_a_covered_use_just_after() -> None:
    # uses at 100 (cost 6) and 103 (cost 103 - 101 = 2); a 2 s budget covers 103 only:
    # the call at 100 is served cold, and its replica is kept through the 2 s gap
    policy = OraclePolicy(arrivals={"f": [100.0, 103.0]}, idle_budget_s=2.0, lead_s=5.0)
    assert _at(policy, 96.0, ("f",)) == {"f": 0}
    assert _at(policy, 100.0, ("f",)) == {"f": 1}
    assert _at(policy, 101.5, ("f",)) == {"f": 1}
    assert _at(policy, 103.5, ("f",)) == {"f": 1}
    assert _at(policy, 104.0, ("f",)) == {"f": 0}
    assert policy.planned_idle_s == pytest.approx(2.0)


def test_slots_are_packed_into_replicas_of_several_requests() -> None:
    policy = OraclePolicy(arrivals={"f": [100.0, 100.2, 100.4]}, lead_s=5.0)
    d = policy.decide(
        Observation(
            now_s=99.0, tick_s=1.0, functions={"f": fobs("f", replicas_ready=0, max_inflight=2)}
        )
    )
    assert d.functions["f"].replicas == 2  # three slots, two requests per replica
    assert d.functions["f"].reason == "3 slot(s) needed ahead"


def test_replicas_serving_requests_are_a_floor_by_max_inflight() -> None:
    policy = OraclePolicy(arrivals={}, idle_budget_s=0.0)
    assert step(policy, 1.0, inflight=3, replicas_ready=3).functions["f"].replicas == 3
    d = step(policy, 2.0, inflight=3, max_inflight=2, replicas_ready=2)
    assert d.functions["f"].replicas == 2
    # one queued request keeps what runs and starts for it, not one replica more
    d = step(policy, 3.0, inflight=2, queued=1, replicas_ready=1, replicas_starting=1)
    assert d.functions["f"].replicas == 2
    assert d.reason == "oracle idle budget 0s"
    assert d.functions["f"].reason == "0 slot(s) needed ahead"


def test_a_workflow_key_is_planned_at_each_stage_offset() -> None:
    wf = Workflow(
        name="w",
        qos=QoS(target_s=5.0),
        stages=(Stage("a", "a"), Stage("b", "b", after=("a",))),
    )
    policy = OraclePolicy(arrivals={"w": [100.0]}, service_s_by_function={"a": 2.0})
    # a: one use at 100 (cost 6); b: one at 102 (cost 6)
    assert policy.planned_cost_s({"w": wf}, 1.0) == pytest.approx(12.0)
    # read as a function name when no workflow is given by that name
    assert policy.planned_cost_s({}, 1.0) == pytest.approx(6.0)


def test_no_arrivals_no_slots() -> None:
    assert assign_slots([], hold_s=1.0) == []
    policy = OraclePolicy(arrivals={"f": []})
    assert _at(policy, 10.0, ("f",)) == {"f": 0}
    assert policy.planned_cost_s({}, 1.0) == 0.0


def test_use_costs_of_several_close_uses_start_from_the_previous_use() -> None:
    # one slot, held 1.5 s: 100 (6), 103 (1.5), 105 (0.5)
    policy = OraclePolicy(arrivals={"f": [100.0, 103.0, 105.0]}, service_s_by_function={"f": 1.5})
    assert policy.planned_cost_s({}, 1.0) == pytest.approx(8.0)
