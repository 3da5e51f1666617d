"""bench/oracle_bound.py: a run below the oracle's frontier of its own seed is found and
measured; runs of other seeds and the oracle's own runs are not compared."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

from tests.helpers import bench_module


def _bench() -> ModuleType:
    return bench_module("oracle_bound")


def _run(label: str, seed: int, idle: float, cold_pct: float, qos_pct: float = 0.0) -> Any:
    return SimpleNamespace(
        label=label,
        seed=seed,
        cost=SimpleNamespace(idle_replica_s=idle),
        cold_start_rate=cold_pct / 100,
        qos_violation_rate=qos_pct / 100,
    )


def test_a_run_below_its_seeds_frontier_is_found_with_its_margin() -> None:
    bench = _bench()
    runs = [
        # seed 0's frontier: 10 % cold at 100, 0 % at 300 (so 5 % at 200)
        _run("oracle-idle-budget-s-0", 0, 100.0, 10.0),
        _run("oracle-idle-budget-s-inf", 0, 300.0, 0.0),
        _run("keep-alive", 0, 200.0, 3.0, qos_pct=1.0),  # 2 points under the bound
        _run("hybrid", 0, 50.0, 0.0),  # left of the frontier: not compared
        # seed 1's frontier is lower: the same run there is above it
        _run("oracle-idle-budget-s-0", 1, 100.0, 1.0),
        _run("oracle-idle-budget-s-inf", 1, 300.0, 0.0),
        _run("keep-alive", 1, 200.0, 3.0),
        _run("oracle-qos", 1, 150.0, 0.0),  # another oracle: never a competitor
    ]
    worst = bench.worst_below(runs, "oracle-idle-budget")
    assert worst["cold_pct"]["points"] == 2.0
    assert str(worst["cold_pct"]["run"]).startswith("keep-alive seed 0")
    assert worst["qos_pct"]["points"] == 0.0  # every oracle point has no QoS miss
    above = [r for r in runs if not (r.label == "keep-alive" and r.seed == 0)]
    assert bench.worst_below(above, "oracle-idle-budget")["cold_pct"]["points"] == 0.0
