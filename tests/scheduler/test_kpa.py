"""knative-kpa: stable/panic windows, panic on a 3x burst, scale-to-zero grace."""

from __future__ import annotations

import json

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
