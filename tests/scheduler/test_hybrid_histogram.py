"""hybrid-histogram: windows from a known idle-time distribution, fixed and ARIMA fallbacks."""

from __future__ import annotations

import json

import pytest

from scheduler.policies.hybrid_histogram import (
    HybridHistogramPolicy,
    IdleTimeHistogram,
    arima_next,
)
from tests.scheduler.sched_helpers import step

MIN = 60.0


def _train(policy: HybridHistogramPolicy, gaps_min: list[int]) -> float:
    """Invoke ``f`` once, then again after each gap (minutes), on 1-minute ticks."""
    t = 0.0
    step(policy, t, tick_s=MIN, arrivals=1)
    for gap in gaps_min:
        for _ in range(gap - 1):
            t += MIN
            step(policy, t, tick_s=MIN, replicas_ready=0, target_replicas=0)
        t += MIN
        step(policy, t, tick_s=MIN, arrivals=1)
    return t


def test_windows_for_known_distribution_drive_decisions() -> None:
    policy = HybridHistogramPolicy()
    # idle times of 9, 10 and 11 minutes, 20 of each: head (5th pct) bin 9, tail (99th) bin 11
    last = _train(policy, [9, 10, 11] * 20)
    win = policy.windows("f")
    assert win.mode == "histogram"
    assert win.prewarm_s == pytest.approx(9 * MIN * 0.9)  # 486 s: lower edge minus 10 %
    assert win.keepalive_end_s == pytest.approx(12 * MIN * 1.1)  # 792 s: upper edge plus 10 %
    assert win.keepalive_s == pytest.approx(792 - 486)
    # after the last execution: unloaded, pre-warmed at 486 s, unloaded again after 792 s
    seen = {}
    for k in range(1, 15):
        d = step(policy, last + k * MIN, tick_s=MIN, replicas_ready=0, target_replicas=0)
        seen[k] = d.functions["f"].replicas
    assert [seen[k] for k in range(1, 9)] == [0] * 8  # idle 60..480 s < 486 s
    assert [seen[k] for k in range(9, 14)] == [1] * 5  # idle 540..780 s
    assert seen[14] == 0  # idle 840 s >= 792 s


def test_few_idle_times_use_fixed_four_hour_keepalive() -> None:
    policy = HybridHistogramPolicy()
    last = _train(policy, [10, 10, 10])  # 3 < min_idle_times
    win = policy.windows("f")
    assert (win.mode, win.prewarm_s, win.keepalive_end_s) == ("fixed", 0.0, 4 * 3600.0)
    d = step(policy, last + 3 * 3600, tick_s=MIN, replicas_ready=1)
    assert d.functions["f"].replicas == 1
    d = step(policy, last + 4 * 3600, tick_s=MIN, replicas_ready=1)
    assert d.functions["f"].replicas == 0


def test_spread_out_histogram_is_not_representative() -> None:
    policy = HybridHistogramPolicy()
    hist = IdleTimeHistogram(240, 60.0)
    for minute in range(240):  # one IT in every bin: CV 0 < 2
        hist.add(minute * 60.0 + 30)
    assert hist.cv == pytest.approx(0.0)
    assert policy.compute_windows(hist).mode == "fixed"
    peaked = IdleTimeHistogram(240, 60.0)
    for _ in range(50):
        peaked.add(125.0)  # bin 2
    assert peaked.cv > 2
    win = policy.compute_windows(peaked)
    assert win.mode == "histogram"
    assert win.prewarm_s == pytest.approx(2 * 60 * 0.9)
    assert win.keepalive_end_s == pytest.approx(3 * 60 * 1.1)


def test_zero_head_means_no_prewarm() -> None:
    policy = HybridHistogramPolicy()
    t = 0.0
    for _ in range(21):  # a request every 30 s on 10 s ticks: 20 idle times of 30 s (bin 0)
        step(policy, t, tick_s=10, arrivals=1)
        step(policy, t + 10, tick_s=10)
        step(policy, t + 20, tick_s=10)
        t += 30
    last = t - 30
    win = policy.windows("f")
    assert (win.mode, win.prewarm_s) == ("histogram", 0.0)
    assert win.keepalive_end_s == pytest.approx(60 * 1.1)
    # stays loaded right after the execution, until 66 s
    reps = [step(policy, last + k, tick_s=10).functions["f"].replicas for k in range(30, 80, 10)]
    assert reps == [1, 1, 1, 1, 0]


def test_out_of_bound_idle_times_switch_to_arima() -> None:
    policy = HybridHistogramPolicy()
    hist = IdleTimeHistogram(240, 60.0)
    series = [300, 310, 295, 305, 300, 290, 310, 300, 305, 295, 300, 302]  # minutes, > 4 h
    for minute in series:
        hist.add(minute * 60.0)
    hist.add(30 * 60.0)  # one in range: OOB share 12/13 >= 0.5
    win = policy.compute_windows(hist)
    assert win.mode == "arima"
    pred_s = win.prewarm_s / 0.85
    assert 200 * 60 < pred_s < 400 * 60
    assert win.keepalive_end_s == pytest.approx(pred_s * 1.15)
    assert arima_next([120.0]) == 120.0  # too short a series: the mean


def test_state_round_trip_through_json() -> None:
    a = HybridHistogramPolicy()
    last = _train(a, [9, 10, 11] * 5)
    b = HybridHistogramPolicy()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.windows("f") == a.windows("f")
    for k in range(1, 15):
        da = step(a, last + k * MIN, tick_s=MIN, replicas_ready=0)
        db = step(b, last + k * MIN, tick_s=MIN, replicas_ready=0)
        assert da == db
