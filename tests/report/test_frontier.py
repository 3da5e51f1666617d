"""Frontier arithmetic and the evaluation's gap to the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.report.compare import t_interval
from testbed.report.evaluation import (
    EvaluationSummary,
    PointSummary,
    oracle_gaps,
    write_results_markdown,
)
from testbed.report.frontier import area_between, envelope, envelope_at


def test_the_envelope_keeps_only_points_that_buy_less_harm_with_more_cost() -> None:
    xs, ys = envelope([(3, 2), (1, 5), (2, 6), (4, 2)])
    assert xs.tolist() == [1.0, 3.0] and ys.tolist() == [5.0, 2.0]
    assert envelope_at([(1, 5), (3, 2)], 2.0) == pytest.approx(3.5)
    assert envelope_at([(1, 5), (3, 2)], 9.0) == 2.0  # more cost never buys more harm
    assert envelope_at([(1, 5), (3, 2)], 0.5) is None  # below the curve's range


def test_the_area_between_curves_is_the_harm_paid_above_the_reference() -> None:
    assert area_between([(0, 4), (10, 2)], [(0, 1), (10, 0)]) == pytest.approx((25.0, 2.5))
    assert area_between([(0, 1), (10, 0)], [(0, 1), (10, 0)]) == pytest.approx((0.0, 0.0))
    assert area_between([(5, 1)], [(0, 1)]) is None  # one point: no range


def _point(label: str, family: str, per_seed: dict[int, tuple[float, float]]) -> PointSummary:
    rows = {s: {"idle_replica_s": x, "cold_start_pct": y, "qos_violation_pct": y}
            for s, (x, y) in per_seed.items()}  # fmt: skip
    return PointSummary(
        label=label,
        family=family,
        knob=None,
        per_seed=rows,
        estimates={"cold_start_pct": t_interval(y for _, y in per_seed.values())},
        requests=100,
    )


def test_each_family_is_measured_against_the_oracle_seed_by_seed() -> None:
    points = [
        _point("oracle-a", "oracle", {0: (0, 10), 1: (0, 20)}),
        _point("oracle-b", "oracle", {0: (100, 0), 1: (100, 0)}),
        _point("oracle-qos", "oracle-qos", {0: (50, 0), 1: (50, 0)}),  # a variant: no family
        _point("pool-0", "pool", {0: (0, 14), 1: (0, 24)}),  # 4 points above, both seeds
        _point("pool-1", "pool", {0: (100, 4), 1: (100, 4)}),
        _point("fixed", "fixed", {0: (50, 5), 1: (50, 10), 2: (50, 0)}),  # one point
    ]
    gaps = oracle_gaps(points, "cold_start_pct")
    assert set(gaps) == {"pool", "fixed"}
    assert gaps["pool"].mean == pytest.approx(4.0) and gaps["pool"].n == 2
    # at 50 the oracle's frontier is at 5 (seed 0) and 10 (seed 1); seed 2 has no oracle
    assert gaps["fixed"].mean == pytest.approx(0.0) and gaps["fixed"].n == 2
    assert oracle_gaps([p for p in points if p.family != "oracle"], "cold_start_pct") == {}


def test_the_results_page_gives_each_familys_gap_to_the_oracle(tmp_path: Path) -> None:
    points = [
        _point("oracle-a", "oracle", {0: (0, 10), 1: (0, 20)}),
        _point("oracle-b", "oracle", {0: (100, 0), 1: (100, 0)}),
        _point("pool-0", "pool", {0: (0, 14), 1: (0, 24)}),
        _point("pool-1", "pool", {0: (100, 4), 1: (100, 4)}),
    ]
    full = [_with_columns(p) for p in points]
    summary = EvaluationSummary(traces={"bursty": tuple(full)}, claims=())
    md = tmp_path / "RESULTS.md"
    write_results_markdown(summary, md, title="t", command="c")
    assert "| pool | 2 | 4.00 ± 0.00 | 4.00 ± 0.00 |" in md.read_text()


def _with_columns(p: PointSummary) -> PointSummary:
    """``p`` with every column's estimate (the page's tables read them all)."""
    rows = {s: {**v, "p99_ms": 100.0, "cost_usd": v["idle_replica_s"] / 100}
            for s, v in p.per_seed.items()}  # fmt: skip
    estimates = {k: t_interval(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    return PointSummary(p.label, p.family, None, rows, estimates, p.requests)
