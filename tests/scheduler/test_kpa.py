"""knative-kpa: stable/panic windows, panic on a 3x burst, scale-to-zero grace."""

from __future__ import annotations

import json

import pytest

from scheduler.policies.kpa import KnativeKPAPolicy, observed_concurrency
from tests.scheduler.sched_helpers import fobs, step


def _run(policy: KnativeKPAPolicy, start: int, stop: int, conc: int, ready: int) -> list:
    return [
        step(policy, float(t), inflight=conc, replicas_ready=ready).functions["f"]
        for t in range(start, stop)
    ]


def test_concurrency_from_busy_time() -> None:
    assert observed_concurrency(fobs(completions=10, mean_service_s=0.1), 1.0) == 1.0
    assert observed_concurrency(fobs(inflight=3, completions=1, mean_service_s=0.1), 1.0) == 3


def test_steady_load_matches_target() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    out = _run(policy, 0, 120, conc=2, ready=2)
    assert {d.replicas for d in out} == {2}
    assert all(d.reason.startswith("stable") for d in out)
    default = KnativeKPAPolicy()  # 70 % of max_inflight=4 -> 2.8 per replica
    d = step(default, 0.0, inflight=6, replicas_ready=3, max_inflight=4).functions["f"]
    assert d.replicas == 3  # ceil(6 / 2.8)


def test_panic_on_3x_burst_then_stable_after_window() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    _run(policy, 0, 120, conc=2, ready=2)
    burst = _run(policy, 120, 126, conc=6, ready=2)  # 3x, before the platform scales
    # after 2 s of burst the 6 s panic average is (2*6 + 4*2) / 6 = 3.3: ceil 4 = 2x ready
    assert [d.reason.startswith("panic") for d in burst] == [False, True, True, True, True, True]
    assert burst[-1].replicas == 6  # the 6 s panic average sees the whole burst
    # the stable window alone would say ceil((54*2 + 6*6) / 60) = 3
    after = _run(policy, 126, 186, conc=2, ready=6)  # burst over, replicas came up
    assert all(d.reason.startswith("panic") for d in after[:59])
    assert all(d.replicas == 6 for d in after[:59])  # never scale down while panicking
    late = _run(policy, 186, 200, conc=2, ready=6)
    assert all(d.reason.startswith("stable") for d in late)
    assert late[-1].replicas == 3  # max scale-down rate 2: floor(6 / 2)


def test_no_panic_below_threshold() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    _run(policy, 0, 120, conc=2, ready=2)
    out = _run(policy, 120, 140, conc=3, ready=2)  # 1.5x
    assert not any(d.reason.startswith("panic") for d in out)
    assert out[-1].replicas == 3


def test_scale_to_zero_after_stable_window_and_grace() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    _run(policy, 0, 60, conc=1, ready=1)
    idle = _run(policy, 60, 200, conc=0, ready=1)
    replicas = [d.replicas for d in idle]
    # the last busy tick ends at t=59, so the 60 s stable average is > 0 through t=118;
    # zero is applied 30 s (the grace period) after that last demand
    first_zero = 60 + replicas.index(0)
    assert first_zero == 118 + 30
    assert all(r == 1 for r in replicas[: first_zero - 60])
    assert all(r == 0 for r in replicas[first_zero - 60 :])


def test_state_round_trip_continues_identically() -> None:
    a = KnativeKPAPolicy(target_concurrency=1.0)
    _run(a, 0, 120, conc=2, ready=2)
    _run(a, 120, 123, conc=6, ready=2)
    b = KnativeKPAPolicy(target_concurrency=1.0)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert _run(a, 123, 200, conc=6, ready=2) == _run(b, 123, 200, conc=6, ready=2)


PHASES = [  # (ticks, concurrency, ready replicas): steady, 3x burst, burst over, silence
    (120, 2, 2),
    (10, 6, 2),
    (60, 2, 6),
    (110, 0, 1),
]


def _scenario(start_s: float = 0.0):  # type: ignore[no-untyped-def]
    t = start_s
    for ticks, conc, ready in PHASES:
        for _ in range(ticks):
            yield t, conc, ready
            t += 1.0


def test_restored_at_any_tick_decides_like_the_uninterrupted_policy() -> None:
    """Through panic, its end and scale to zero, a policy rebuilt from its JSON state at
    every tick decides exactly as the one that never stopped."""
    straight = KnativeKPAPolicy(target_concurrency=1.0)
    restored = KnativeKPAPolicy(target_concurrency=1.0)
    reasons = set()
    for t, conc, ready in _scenario(start_s=500.0):
        want = step(straight, t, inflight=conc, replicas_ready=ready).functions["f"]
        fresh = KnativeKPAPolicy(target_concurrency=1.0)
        fresh.load_state_dict(json.loads(json.dumps(restored.state_dict())))
        restored = fresh
        got = step(restored, t, inflight=conc, replicas_ready=ready).functions["f"]
        assert (got.replicas, got.reason) == (want.replicas, want.reason), t
        reasons.add(want.reason.split(":")[0])
        if want.reason.endswith("; scale to zero"):
            reasons.add("scale to zero")
    assert {"stable", "panic", "scale to zero"} <= reasons


def test_a_function_first_seen_late_averages_over_its_own_age() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    out = _run(policy, 1000, 1005, conc=2, ready=2)
    # five seconds old: the windows average over 5 s, not over 60 s of assumed silence
    assert [d.replicas for d in out] == [2] * 5


def test_one_ready_replica_panics_at_twice_its_target() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    _run(policy, 0, 60, conc=1, ready=1)
    burst = _run(policy, 60, 66, conc=3, ready=1)
    assert burst[-1].reason.startswith("panic") and burst[-1].replicas == 3


def test_silence_goes_to_one_replica_for_the_grace_then_zero() -> None:
    policy = KnativeKPAPolicy(target_concurrency=1.0)
    _run(policy, 0, 60, conc=4, ready=4)
    idle = _run(policy, 60, 200, conc=0, ready=4)
    # no traffic means zero whatever the ready count (no scale-down-rate floor of 2), held
    # at one replica through the grace period
    silent = idle[59:]  # from t=119 the 60 s window holds no traffic
    assert {d.replicas for d in silent} == {1, 0}
    assert [d.replicas for d in silent] == sorted((d.replicas for d in silent), reverse=True)
    assert idle[-1].reason.endswith("; scale to zero")
    assert step(policy, 200.0, inflight=0, replicas_ready=0).reason == "knative kpa"


def test_settings_knative_allows_and_refuses() -> None:
    KnativeKPAPolicy(max_scale_up_rate=1.5, max_scale_down_rate=1.5, scale_to_zero_grace_s=0.0)
    KnativeKPAPolicy(scale_to_zero_grace_s=0.5, target_utilization=1.0)
    assert KnativeKPAPolicy().panic_window_s == 6.0  # Knative: 10 % of the 60 s window
    with pytest.raises(ValueError, match=r"target_utilization in \(0, 1\]"):
        KnativeKPAPolicy(target_utilization=1.5)
    with pytest.raises(ValueError, match="scale rates must be > 1"):
        KnativeKPAPolicy(max_scale_up_rate=1.0)
    with pytest.raises(ValueError, match="scale_to_zero_grace_s must be >= 0"):
        KnativeKPAPolicy(scale_to_zero_grace_s=-1.0)
