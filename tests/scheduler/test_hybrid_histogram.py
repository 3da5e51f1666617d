"""hybrid-histogram: windows from a known idle-time distribution, fixed and ARIMA fallbacks."""

from __future__ import annotations

import json

import pytest

from scheduler.policies.hybrid_histogram import (
    HybridHistogramPolicy,
    IdleTimeHistogram,
    Windows,
    arima_next,
)
from scheduler.policy import Observation
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import fobs, step
from tests.scheduler.sim_scenarios import run_scenario

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


def test_tail_percentile_99_and_90_give_different_decisions() -> None:
    """90 % of idle times are 10 min, 10 % are 30 min: the 90th percentile bin is 10, the 99th
    bin 30, so 20 minutes after an execution only the 99th-percentile policy is warm."""
    gaps = [30, 30] + [10] * 18
    p99 = HybridHistogramPolicy(tail_percentile=99.0)
    p90 = HybridHistogramPolicy(tail_percentile=90.0)
    last = _train(p99, gaps)
    assert _train(p90, gaps) == last
    assert p99.windows("f").keepalive_end_s == pytest.approx(31 * MIN * 1.1)
    assert p90.windows("f").keepalive_end_s == pytest.approx(11 * MIN * 1.1)
    assert p99.windows("f").prewarm_s == p90.windows("f").prewarm_s == pytest.approx(540.0)
    decisions = {}
    for name, policy in (("p99", p99), ("p90", p90)):
        decisions[name] = [
            step(policy, last + k * MIN, tick_s=MIN, replicas_ready=0).functions["f"].replicas
            for k in range(1, 36)
        ]
    assert decisions["p99"][8:34] == [1] * 26  # warm from 9 to 34 minutes
    assert decisions["p90"][8:12] == [1] * 4  # warm from 9 to 12 minutes only
    assert decisions["p90"][12:] == [0] * 23
    assert decisions["p99"][19] == 1 and decisions["p90"][19] == 0  # 20 minutes idle


def test_training_history_skips_the_fallback() -> None:
    history = {"f": [-36000.0 + 600.0 * k for k in range(60)]}  # every 10 min for 10 hours
    cold = HybridHistogramPolicy()
    trained = HybridHistogramPolicy(history_arrivals=history)
    for policy in (cold, trained):
        step(policy, 0.0, tick_s=MIN, replicas_ready=0)
    assert cold.windows("f").mode == "fixed"
    win = trained.windows("f")
    assert win.mode == "histogram"
    assert (win.prewarm_s, win.keepalive_end_s) == (pytest.approx(540.0), pytest.approx(726.0))
    # the last training call was at -600 s: pre-warm at -60 s, so warm at t=60 s
    assert step(trained, 60.0, tick_s=MIN, replicas_ready=0).functions["f"].replicas == 1
    assert step(trained, 180.0, tick_s=MIN, replicas_ready=0).functions["f"].replicas == 0


def test_one_histogram_per_application() -> None:
    stages = (Stage("a", "a"), Stage("b", "b", after=("a",)))
    wf = Workflow(name="w", qos=QoS(target_s=1.0), stages=stages)
    policy = HybridHistogramPolicy()

    def at(t: float, active: bool) -> dict[str, int | None]:
        fns = {
            "a": fobs("a", arrivals=int(active), replicas_ready=0),
            "b": fobs("b", replicas_ready=0),
            "c": fobs("c", replicas_ready=0),
        }
        o = Observation(now_s=t, tick_s=MIN, functions=fns, workflows={"w": wf})
        return {n: d.replicas for n, d in policy.decide(o).functions.items()}

    assert at(0.0, True) == {"a": 1, "b": 1, "c": 0}  # the application is loaded as a whole
    t = 0.0
    for _ in range(20):  # idle times of 4 minutes (bin 4)
        at(t + MIN, False)
        t += 5 * MIN
        at(t, True)
    assert policy.windows("a") == policy.windows("b") == policy.windows("w")
    assert policy.windows("w").mode == "histogram"
    assert policy.windows("c").mode == "fixed"


def test_each_replica_follows_its_own_last_use_in_the_simulator() -> None:
    """Fixed mode with a 60 s range is keep-alive 60 s: the keep-alive scenario's numbers
    (3 replicas until 67 s, then 1 until 96 s) instead of the peak pool until 96 s."""
    policy = HybridHistogramPolicy(range_s=60.0, bin_s=6.0)
    run = run_scenario(policy, {"f": [0.5, 0.5, 0.5, 30.5]}, 120.0, service_s=5.0)
    assert [run.alive_at(t) for t in (7, 36, 66)] == [3, 3, 3]
    assert [run.alive_at(t) for t in (67, 95)] == [1, 1]
    assert run.alive_at(96) == 0


def test_cv_of_the_bin_counts_is_the_sample_cv_over_every_bin() -> None:
    import numpy as np

    hist = IdleTimeHistogram(n_bins=10, bin_s=60.0)
    for minutes in (0.5, 0.5, 0.5, 2.2, 2.9, 7.0, 30.0):  # bins 0,0,0,2,2,7 and one OOB
        hist.add(minutes * 60.0)
    counts = np.zeros(10)
    counts[[0, 2, 7]] = [3, 2, 1]
    expected = counts.std(ddof=1) / counts.mean()
    assert hist.cv == pytest.approx(expected)
    assert (hist.count, hist.oob) == (6, 1) and hist.oob_rate == pytest.approx(1 / 7)
    again = IdleTimeHistogram(n_bins=10, bin_s=60.0)
    again.load_json(json.loads(json.dumps(hist.to_json())))
    assert again.cv == pytest.approx(expected)
    assert (again.count, again.oob, again.raw_min) == (6, 1, hist.raw_min)


def test_a_few_out_of_bound_idle_times_keep_the_histogram() -> None:
    policy = HybridHistogramPolicy(range_s=20 * MIN)
    _train(policy, [2] * 18 + [30])  # one idle time past the 20-minute range in 19
    assert policy.windows("f").mode == "histogram"
    assert policy.windows("f").keepalive_end_s == pytest.approx(3 * MIN * 1.1)


def _app_tick(policy: HybridHistogramPolicy, t: float, wfs: dict, **active: int):  # type: ignore[no-untyped-def]
    # n requests in flight on n ready replicas: the per-replica slots see n replicas in use
    fns = {
        n: fobs(
            n, arrivals=active.get(n, 0), inflight=active.get(n, 0), replicas_ready=active.get(n, 0)
        )
        for n in ("a", "b", "c")
    }
    o = Observation(now_s=t, tick_s=MIN, functions=fns, workflows=wfs)
    return policy.decide(o)


def test_restored_at_any_tick_decides_like_the_uninterrupted_policy() -> None:
    """An application of two functions, a lone function, idle times in and out of range:
    rebuilt from its JSON state at every tick, the policy decides as the one that never
    stopped (histograms, out-of-bound counts, applications and per-replica slots included)."""
    wf = Workflow(name="w", qos=QoS(target_s=1.0), stages=(Stage("a", "a"), Stage("b", "b")))
    wfs = {"w": wf}
    kw = {"range_s": 12 * MIN, "min_idle_times": 3, "cv_threshold": 0.5}
    straight, restored = HybridHistogramPolicy(**kw), HybridHistogramPolicy(**kw)
    modes = set()
    gaps = [3, 3, 4, 3, 15, 3, 4, 3, 3, 20, 3]
    t = 0.0
    for beat, gap in enumerate(gaps):
        for k in range(gap):
            active = {"a": 3} if k == 0 else {}
            if k == 0 and beat % 2:
                active["c"] = 1
            want = _app_tick(straight, t, wfs, **active)
            fresh = HybridHistogramPolicy(**kw)
            fresh.load_state_dict(json.loads(json.dumps(restored.state_dict())))
            restored = fresh
            assert _app_tick(restored, t, wfs, **active) == want, t
            modes |= {straight.windows(n).mode for n in ("w", "c")}
            t += MIN
    assert straight.windows("a") == straight.windows("b") == straight.windows("w")
    assert {"histogram", "fixed"} <= modes


def test_a_function_in_two_workflows_joins_the_first_by_name() -> None:
    def wf(name: str, *fns: str) -> Workflow:
        return Workflow(name=name, qos=QoS(target_s=1.0), stages=tuple(Stage(f, f) for f in fns))

    wfs = {"w2": wf("w2", "b", "c"), "w1": wf("w1", "a", "b")}
    policy = HybridHistogramPolicy()
    _app_tick(policy, 0.0, wfs, a=1)
    state = policy.state_dict()
    assert state["app_of"] == {"a": "w1", "b": "w1", "c": "w2"}


def test_history_of_a_workflow_trains_its_application() -> None:
    wf = Workflow(name="w", qos=QoS(target_s=1.0), stages=(Stage("a", "a"), Stage("b", "b")))
    every_10_min = [-36000.0 + 600.0 * k for k in range(60)]
    future_only = [100.0, 200.0]  # after the first tick: not history yet, and skipped
    policy = HybridHistogramPolicy(history_arrivals={"c": future_only, "w": every_10_min})
    _app_tick(policy, 0.0, {"w": wf})
    assert policy.windows("a").mode == policy.windows("w").mode == "histogram"
    assert policy.windows("c").mode == "fixed"


def test_settings_are_checked() -> None:
    HybridHistogramPolicy(range_s=60.0, bin_s=60.0, head_percentile=0.0, oob_threshold=1.0)
    for bad, match in (
        ({"bin_s": 0.0}, "0 < bin_s <= range_s"),
        ({"head_percentile": 99.0, "tail_percentile": 99.0}, "head_percentile < tail"),
        ({"margin": 1.0}, r"margins must be in \[0, 1\)"),
        ({"arima_margin": 1.0}, r"margins must be in \[0, 1\)"),
        ({"oob_threshold": 1.5}, r"oob_threshold must be in \(0, 1\]"),
    ):
        with pytest.raises(ValueError, match=match):
            HybridHistogramPolicy(**bad)
    with pytest.raises(ValueError, match="at least one idle time"):
        arima_next([])


def test_a_function_warm_when_first_seen_counts_its_first_idle_time() -> None:
    policy = HybridHistogramPolicy()
    fns = {"f": fobs("f", replicas_ready=0, replicas_starting=1)}  # starting, no requests
    d = policy.decide(Observation(now_s=0.0, tick_s=MIN, functions=fns))
    assert d.reason == "hybrid histogram"
    assert d.functions["f"].replicas == 1  # the windows start now: kept, not "never used"
    assert d.functions["f"].reason.endswith("fixed: pre-warm 0s, keep-alive until 14400s")
    step(policy, 5 * MIN, tick_s=MIN, arrivals=1)
    assert policy.state_dict()["functions"]["f"]["hist"]["bins"] == {"5": 1}


def test_every_function_is_decided_when_several_were_never_used() -> None:
    policy = HybridHistogramPolicy()
    d = _app_tick(policy, 0.0, {}, c=1)
    assert set(d.functions) == {"a", "b", "c"}
    assert d.functions["a"].reason == d.functions["b"].reason == "never used"


def test_history_of_a_workflow_whose_functions_joined_another_application() -> None:
    def wf(name: str) -> Workflow:
        return Workflow(name=name, qos=QoS(target_s=1.0), stages=(Stage("a", "a"), Stage("b", "b")))

    every_10_min = [-36000.0 + 600.0 * k for k in range(60)]
    policy = HybridHistogramPolicy(history_arrivals={"w2": every_10_min})
    _app_tick(policy, 0.0, {"w1": wf("w1"), "w2": wf("w2")})
    assert policy.windows("a") == policy.windows("w1")
    assert policy.windows("w1").mode == "histogram"  # w2's history trained w1, a and b's app


def test_empty_or_unknown_state_is_a_fresh_start() -> None:
    policy = HybridHistogramPolicy(range_s=600.0)
    policy.load_state_dict({})
    assert policy.windows("nobody") == Windows("fixed", 0.0, 600.0)
    hist = IdleTimeHistogram(n_bins=10, bin_s=60.0)
    hist.load_json({})
    assert (hist.count, hist.oob, hist.raw_min, hist.cv) == (0, 0, [], 0.0)
