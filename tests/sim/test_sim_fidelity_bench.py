"""bench/sim_fidelity.py's scoring: the issue's targets per metric, the count of cells that
meet them, and the policy pairs the sim orders as live does."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from tests.helpers import bench_module


def _bench() -> ModuleType:
    return bench_module("sim_fidelity")


def _row(bench: ModuleType, **live_sim: tuple[float, float]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric in bench.METRICS:
        live, sim = live_sim.get(metric, (1.0, 1.0))
        row[metric] = {
            "live": live,
            "sim": sim,
            "rel_err": bench.rel_err(sim, live),
            "ci_lo": float("nan"),
            "ci_hi": float("nan"),
            "meets_target": bench.meets(metric, sim, live),
        }
    return row


def test_targets_are_relative_above_five_percent_and_absolute_below() -> None:
    bench = _bench()
    assert bench.meets("qos_violation_pct", 10.9, 10.0)  # +9 %
    assert not bench.meets("qos_violation_pct", 11.2, 10.0)  # +12 %
    assert bench.meets("cold_start_pct", 1.4, 1.0)  # +40 % but 0.4 points below 5 %
    assert not bench.meets("cold_start_pct", 1.6, 1.0)  # 0.6 points
    assert bench.meets("p95_s", 0.114, 0.1) and not bench.meets("p95_s", 0.116, 0.1)
    assert bench.meets("cost_usd", 1.04, 1.0) and not bench.meets("cost_usd", 1.06, 1.0)
    assert not bench.meets("p99_s", 0.01, 0.0)  # a live zero is met only by a zero


def test_within_target_counts_the_cells_of_each_metric() -> None:
    bench = _bench()
    policies = {
        "always-on": _row(bench, p95_s=(0.050, 0.030)),  # -40 %: missed
        "keep-alive": _row(bench, p95_s=(1.0, 1.1), cost_usd=(1.0, 1.2)),  # cost +20 %
        "aquatope": _row(bench),
    }
    met = bench.within_target(policies)
    assert met["p95_s"] == (2, 3)
    assert met["cost_usd"] == (2, 3)
    assert met["qos_violation_pct"] == (3, 3)
    lines = bench.markdown(
        {
            "bursty": {
                "policies": policies,
                "ranking": {
                    m: {"identical": True, "pairs": bench.pairs_in_order(policies, m)}
                    for m in bench.METRICS
                },
            }
        }
    )
    assert lines[-1] == "| bursty | within target | 3/3 | 3/3 | 2/3 | 3/3 | 2/3 |"


def test_a_sim_tie_counts_against_a_pair_live_orders() -> None:
    bench = _bench()
    policies = {
        "a": _row(bench, p99_s=(1.0, 2.0)),
        "b": _row(bench, p99_s=(2.0, 2.0)),  # live a < b, sim a == b: not in order
        "c": _row(bench, p99_s=(3.0, 4.0)),
    }
    assert bench.pairs_in_order(policies, "p99_s") == (2, 3)
    assert bench.pairs_in_order(policies, "qos_violation_pct") == (0, 0)  # all tied live
