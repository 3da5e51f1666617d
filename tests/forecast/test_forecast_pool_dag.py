"""Pool sizing (Erlang B, level, look-ahead) and DAG propagation of demand."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.forecast.dag import DagPropagator
from scheduler.forecast.pool import (
    choose_level,
    delay_price_for_level,
    erlang_b,
    erlang_c,
    lookahead_steps,
    replicas_for_cost,
    replicas_for_load,
)
from testbed.core.platform import QoS, Stage, Workflow


def test_erlang_b_known_values() -> None:
    assert erlang_b(0, 3.0) == 1.0
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)  # (1/2) / (1 + 1 + 1/2)


def test_replicas_follow_concurrency_not_counts() -> None:
    # 60 arrivals per minute of 50 ms each: load 0.05 -> one replica, not 60
    assert replicas_for_load(60 / 60 * 0.05, 0.95) == 1
    # a rare function still needs one replica when it is expected at all
    assert replicas_for_load(1e-4, 0.95) == 1
    assert replicas_for_load(0.0, 0.95) == 0
    loads = [replicas_for_load(a, 0.95) for a in (0.5, 2.0, 8.0, 32.0)]
    assert loads == sorted(loads) and loads[-1] > 32
    assert replicas_for_load(8.0, 0.95, max_inflight=4) == -(-replicas_for_load(8.0, 0.95) // 4)
    assert replicas_for_load(8.0, 0.99) >= replicas_for_load(8.0, 0.9)
    assert replicas_for_load(100.0, 0.99, max_replicas=5) == 5


def test_erlang_c_bounds() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = utilisation
    assert erlang_c(2, 3.0) == 1.0  # overloaded
    assert erlang_c(4, 2.0) > erlang_b(4, 2.0)


def _cost_pool(rates: list[float], weights: list[float], price: float, **kw: float) -> int:
    opts = {"exposure_s": 8.0, "cold_start_s": 3.0, "service_s": 1.0}
    opts.update(kw)
    return replicas_for_cost(rates, weights, delay_price=price, **opts)


def test_cost_rule_trades_idle_for_delay() -> None:
    busy = [_cost_pool([2.0], [1.0], delay_price_for_level(q)) for q in (0.9, 0.99, 0.999)]
    assert busy == sorted(busy) and busy[0] >= 3  # load 2 needs more than 2 replicas
    assert _cost_pool([0.0], [1.0], 1000.0) == 0
    # a quiet function with a 3% chance of a 2 req/s burst: one warm replica is worth keeping
    # only when waiting is priced high enough
    quiet = ([0.0, 2.0], [0.97, 0.03])
    assert _cost_pool(*quiet, delay_price_for_level(0.5)) == 0
    assert _cost_pool(*quiet, delay_price_for_level(0.999)) >= 1
    many = _cost_pool([20.0], [1.0], 19.0, service_s=0.01)  # concurrency 0.2, not 20
    assert 1 <= many <= 3


def test_level_from_qos_and_idle_weight() -> None:
    assert choose_level([95.0]) == pytest.approx(0.95)
    assert choose_level([90.0, 99.0]) == pytest.approx(0.99)
    assert choose_level([95.0], idle_weight=4.0) < 0.95 < choose_level([95.0], idle_weight=0.25)
    assert choose_level([]) == pytest.approx(0.95)


def test_lookahead_covers_cold_start() -> None:
    assert lookahead_steps(0.5, 1.0, 10.0) == 1
    assert lookahead_steps(25.0, 1.0, 10.0) == 3


def _chain() -> dict[str, Workflow]:
    wf = Workflow(
        name="pipe",
        qos=QoS(target_s=2.0),
        stages=(
            Stage("a", "entry"),
            Stage("b", "mid", after=("a",)),
            Stage("c1", "left", after=("b",)),
            Stage("c2", "right", after=("b",)),
            Stage("d", "join", after=("c1", "c2")),
        ),
    )
    return {wf.name: wf}


def test_burst_at_entry_reaches_every_stage() -> None:
    dag = DagPropagator(_chain())
    assert dag.upstream("join") == {"left": 0.5, "right": 0.5}
    out = dag.propagate({"entry": 30.0, "mid": 0.0, "left": 0.0, "right": 0.0, "join": 0.0})
    assert out["mid"] == out["left"] == out["right"] == out["join"] == pytest.approx(30.0)
    paths = dag.propagate({"entry": np.array([0.0, 30.0, 30.0])}, shift_steps={"entry": 1})
    np.testing.assert_allclose(paths["mid"], [0.0, 0.0, 30.0])  # delayed by the latency


def test_fan_out_gain_is_learned() -> None:
    dag = DagPropagator(_chain(), decay=1.0, prior_calls=1.0)
    for _ in range(50):  # "left" is only called for a fifth of the requests
        dag.observe_step({"entry": 10, "mid": 10, "left": 2, "right": 10, "join": 10})
    assert dag.gain("left") == pytest.approx(0.2, abs=0.02)
    assert dag.propagate({"entry": 100.0})["left"] == pytest.approx(20.0, rel=0.1)


def test_start_cost_charges_only_new_replicas() -> None:
    rates, weights = [0.0, 0.0, 0.5, 2.0], [0.4, 0.4, 0.15, 0.05]
    kw = {"exposure_s": 4.5, "cold_start_s": 3.5, "delay_price": 19.0, "max_inflight": 1}
    free = replicas_for_cost(rates, weights, 0.5, **kw)
    dear = replicas_for_cost(rates, weights, 0.5, start_cost=30.0, **kw)
    kept = replicas_for_cost(rates, weights, 0.5, start_cost=30.0, current=free, **kw)
    assert free >= 2 and dear < free  # noisy upper scenarios no longer start replicas
    assert kept == free  # replicas already running pay nothing to keep
    # merging equal scenarios changes nothing
    assert replicas_for_cost([0.5, 0.5, 2.0], [0.3, 0.3, 0.4], 0.5, **kw) == replicas_for_cost(
        [0.5, 2.0], [0.6, 0.4], 0.5, **kw
    )
