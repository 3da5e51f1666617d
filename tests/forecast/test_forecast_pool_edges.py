"""Edges of the pool arithmetic that the pre-warmer's figures depend on (each test kills a
mutant that survived the rest of the suite: docs/testing.md)."""

from __future__ import annotations

import math

import pytest

from scheduler.forecast.pool import (
    choose_level,
    delay_price_for_level,
    erlang_b,
    lookahead_steps,
    pool_cost,
    replica_need,
    replicas_for_cost,
    replicas_for_load,
    replicas_worth_keeping,
)


def test_erlang_b_at_zero_load_and_zero_servers() -> None:
    assert erlang_b(3, 0.0) == 0.0  # nothing offered: nothing blocked (not an error)
    assert erlang_b(0, 2.0) == 1.0
    # by hand: B(1)=2/3, B(2)=0.4, B(3)=4/19, B(4)=2/21
    assert erlang_b(4, 2.0) == pytest.approx(2 / 21)
    with pytest.raises(ValueError, match=">= 0"):
        erlang_b(2, -0.1)


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_levels_outside_the_open_interval_are_refused(level: float) -> None:
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        replicas_for_load(1.0, level)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        delay_price_for_level(level)


def test_replicas_for_load_needs_a_slot_per_replica() -> None:
    with pytest.raises(ValueError, match="max_inflight must be >= 1"):
        replicas_for_load(1.0, 0.9, max_inflight=0)


def test_look_ahead_with_sub_second_steps() -> None:
    assert lookahead_steps(1.0, 0.5, 0.5) == 3
    assert lookahead_steps(0.2, 0.0, 0.25) == 1
    with pytest.raises(ValueError, match="step_s must be positive"):
        lookahead_steps(1.0, 1.0, 0.0)


def test_choose_level_honours_its_floor_and_stays_below_one() -> None:
    assert choose_level([50.0], floor=0.9) == pytest.approx(0.9)
    assert choose_level([50.0], ceiling=0.3) == pytest.approx(0.3)
    near_one = choose_level([99.9999], idle_weight=1e-9)
    assert 0.999 < near_one <= 1.0 - 1e-12


def test_pool_cost_is_linear_in_its_scenarios() -> None:
    kw = {"exposure_s": 10.0, "cold_start_s": 2.0, "delay_price": 5.0, "service_s": 0.2}
    for replicas in (0, 1, 3):
        mixed = pool_cost(replicas, [4.0, 0.0, 1.0], [0.5, 0.3, 0.2], **kw)
        parts = (
            0.5 * pool_cost(replicas, [4.0], [1.0], **kw)
            + 0.3 * pool_cost(replicas, [0.0], [1.0], **kw)
            + 0.2 * pool_cost(replicas, [1.0], [1.0], **kw)
        )
        assert mixed == pytest.approx(parts)


def test_pool_cost_idle_share_with_several_slots_per_replica() -> None:
    # one replica of 4 slots under 2 Erlangs: it carries 2 (1 - B(4, 2)) of its 4 slots busy
    cost = pool_cost(
        1,
        [20.0],
        [1.0],
        0.1,
        exposure_s=10.0,
        cold_start_s=2.0,
        delay_price=0.0,
        max_inflight=4,
    )
    assert cost == pytest.approx(10.0 * (1.0 - 2.0 * (1.0 - 2 / 21) / 4))


def test_replica_need_normalises_its_weights() -> None:
    one = replica_need([1.0, 3.0], [1.0, 1.0], 0.5, horizon_s=4.0)
    doubled = replica_need([1.0, 3.0], [2.0, 2.0], 0.5, horizon_s=4.0)
    assert doubled == pytest.approx(one)
    assert 0.0 < one[0] <= 1.0


COST_KW = {"exposure_s": 10.0, "cold_start_s": 2.0}


def test_a_slow_function_worth_a_replica_gets_one() -> None:
    # 0.5 requests per second (every rate below 1/s), waiting dear: one replica, not zero
    assert replicas_for_cost([0.5], [1.0], 0.05, delay_price=50.0, **COST_KW) == 1


def test_defaults_are_one_slot_per_replica_and_unit_queue_weight() -> None:
    args = ([6.0], [1.0], 0.5)
    kw = {"delay_price": 3.0, **COST_KW}
    default = replicas_for_cost(*args, **kw)
    assert default == replicas_for_cost(*args, **kw, queue_weight=1.0, max_inflight=1)
    assert default != replicas_for_cost(*args, **kw, max_inflight=2)
    assert default != replicas_for_cost(*args, **kw, queue_weight=25.0)


def test_the_first_replica_is_priced_by_a_blocked_arrival() -> None:
    # replica 1 saves a cold start (dear); replica 2 only a wait for a busy one (cheap)
    assert replicas_worth_keeping([0.5, 0.5], blocked_cost=10.0, idle_cost=1.0, busy_cost=0.1) == 1
    assert replicas_worth_keeping([0.5, 0.5], blocked_cost=10.0, idle_cost=1.0) == 2
    assert replicas_worth_keeping([0.05], blocked_cost=10.0, idle_cost=1.0) == 0
    # a replica not yet running also pays its start
    assert replicas_worth_keeping([0.5], blocked_cost=10.0, idle_cost=1.0, start_cost=5.0) == 0
    assert (
        replicas_worth_keeping([0.5], blocked_cost=10.0, idle_cost=1.0, start_cost=5.0, current=1)
        == 1
    )
    assert math.isclose(delay_price_for_level(0.95), 19.0)
