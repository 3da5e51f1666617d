"""always-on: OpenFaaS CE alert autoscaling (min 1, step scale-up while firing, back to min)."""

from __future__ import annotations

import json

import pytest

from scheduler.policies.always_on import AlwaysOnPolicy
from tests.scheduler.sched_helpers import step


def test_idle_function_keeps_one_replica() -> None:
    policy = AlwaysOnPolicy()
    for t in range(5):
        d = step(policy, float(t), replicas_ready=0, target_replicas=0)
        assert d.functions["f"].replicas == 1


def test_min_bound_above_one_is_kept() -> None:
    policy = AlwaysOnPolicy()
    d = step(policy, 0.0, replicas_ready=3, min_replicas=3)
    assert d.functions["f"].replicas == 3


def test_ce_gateway_defaults_add_one_replica_per_notification_up_to_five() -> None:
    # the gateway this project builds: max capped at 5, factor 10 %: ceil(5 x 10 %) = +1
    policy = AlwaysOnPolicy(per_replica=False)
    targets = [
        step(policy, float(t), arrivals=100, replicas_ready=1, max_replicas=20)
        .functions["f"]
        .replicas
        for t in range(1, 200)
    ]
    assert targets[4] == 1 and targets[5] == 2  # fires at t=6
    assert targets[35] == 3 and targets[65] == 4 and targets[95] == 5
    assert max(targets) == 5  # never above the cap, although the function allows 20


def test_fires_after_window_steps_by_factor_then_waits_repeat() -> None:
    # the older documented rule: factor 20 % of a max of 20, no cap (+4 per notification)
    policy = AlwaysOnPolicy(cooldown_s=20, scale_factor_pct=20, replica_cap=None)
    targets = []
    for t in range(1, 100):
        d = step(policy, float(t), arrivals=100, replicas_ready=1)  # 100 rps on one replica
        targets.append(d.functions["f"].replicas)
    # rate(10s) crosses 5 rps at t=1 (100/10); pending for 5 s; fires at t=6: +ceil(20*20%)=4
    assert targets[:5] == [1] * 5
    assert targets[5] == 5
    # next steps every 30 s while still firing: t=36 -> 9, t=66 -> 13, t=96 -> 17
    assert targets[34] == 5 and targets[35] == 9
    assert targets[65] == 13 and targets[95] == 17
    # load stops: the rate window drains (10 s), then cooldown 20 s, then back to min 1
    out = []
    for t in range(100, 140):
        out.append(step(policy, float(t), arrivals=0, replicas_ready=17).functions["f"].replicas)
    assert out[0] == 17
    first_one = out.index(1)
    # at t=101 the 10 s window holds 8 busy ticks: 80 rps / 17 replicas = 4.7 <= 5, the alert
    # resolves; after the 20 s cooldown (t=121) the target drops to the minimum
    assert 100 + first_one == 121
    assert set(out[:first_one]) == {17}
    assert all(r == 1 for r in out[first_one:])


def test_rate_per_replica_stops_scaling_when_replicas_absorb_it() -> None:
    policy = AlwaysOnPolicy(replica_cap=None)
    for t in range(1, 31):
        d = step(policy, float(t), arrivals=40, replicas_ready=9, target_replicas=9)
        assert d.functions["f"].replicas == 9  # 40 rps / 9 = 4.4 rps each: no alert
    # as in OpenFaaS CE, a resolved alert sends the function back to its minimum (cooldown 30 s)
    d = step(policy, 31.0, arrivals=40, replicas_ready=9, target_replicas=9)
    assert d.functions["f"].replicas == 1
    # the CE rule: total rate 40 > 5 fires (older factor: +4 of a max of 20)
    total = AlwaysOnPolicy(per_replica=False, scale_factor_pct=20, replica_cap=None)
    reps = [
        step(total, float(t), arrivals=40, replicas_ready=9).functions["f"].replicas
        for t in range(1, 10)
    ]
    assert reps[-1] == 13


def test_max_bound_caps_scale_up_and_state_round_trips() -> None:
    a = AlwaysOnPolicy(repeat_s=0, replica_cap=None)
    for t in range(1, 10):
        step(a, float(t), arrivals=1000, replicas_ready=1, max_replicas=6)
    b = AlwaysOnPolicy(repeat_s=0, replica_cap=None)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for p in (a, b):
        d = step(p, 10.0, arrivals=1000, replicas_ready=1, max_replicas=6)
        assert d.functions["f"].replicas == 6
    assert a.state_dict() == b.state_dict()


def _phases():  # type: ignore[no-untyped-def]
    """(t, arrivals, ready): quiet, a burst that fires twice, then quiet through the cooldown."""
    t = 1.0
    for ticks, arrivals, ready in ((10, 2, 1), (70, 100, 2), (60, 0, 3)):
        for _ in range(ticks):
            yield t, arrivals, ready
            t += 1.0


def test_restored_at_any_tick_decides_like_the_uninterrupted_policy() -> None:
    straight, restored = AlwaysOnPolicy(), AlwaysOnPolicy()
    kinds = set()
    for t, arrivals, ready in _phases():
        want = step(straight, t, arrivals=arrivals, replicas_ready=ready).functions["f"]
        fresh = AlwaysOnPolicy()
        fresh.load_state_dict(json.loads(json.dumps(restored.state_dict())))
        restored = fresh
        got = step(restored, t, arrivals=arrivals, replicas_ready=ready).functions["f"]
        assert (got.replicas, got.reason) == (want.replicas, want.reason), t
        kinds.add(want.reason.split(":")[0].split(" ")[1])
    assert {"pending", "firing", "firing,", "resolved"} <= kinds, kinds
    empty = AlwaysOnPolicy()
    empty.load_state_dict({})  # nothing saved yet: a fresh start
    assert step(empty, 0.0).functions["f"].replicas == 1


def test_reasons_say_what_the_alert_compares() -> None:
    per_replica, total = AlwaysOnPolicy(), AlwaysOnPolicy(per_replica=False)
    d = step(per_replica, 1.0, arrivals=120, replicas_ready=2)
    assert d.reason == "openfaas-ce alert autoscaling"
    assert d.functions["f"].reason == "alert pending: 6.0 rps per replica > 5"
    assert step(total, 1.0, arrivals=80).functions["f"].reason == "alert pending: 8.0 rps total > 5"
    quiet = step(AlwaysOnPolicy(), 1.0, arrivals=10, replicas_ready=1).functions["f"]
    assert quiet.reason == "1.0 rps per replica <= 5"


def test_at_the_cap_a_firing_alert_does_not_step() -> None:
    policy = AlwaysOnPolicy(repeat_s=0, replica_cap=2)
    reasons = [
        step(policy, float(t), arrivals=1000, replicas_ready=1).functions["f"].reason
        for t in range(1, 12)
    ]
    stepped = [r for r in reasons if r.startswith("alert firing:")]
    assert len(stepped) == 1  # 1 -> 2, then the cap: "next step not due" from then on
    assert reasons[-1].startswith("alert firing, next step not due")


def test_settings_are_checked() -> None:
    AlwaysOnPolicy(scale_factor_pct=100)
    for bad, match in (
        ({"threshold_rps": 0}, "threshold_rps must be positive"),
        ({"cooldown_s": -1}, "fire_after_s, repeat_s and cooldown_s must be >= 0"),
        ({"scale_factor_pct": 0}, r"scale_factor_pct must be in \(0, 100\]"),
        ({"scale_factor_pct": 100.5}, r"scale_factor_pct must be in \(0, 100\]"),
        ({"replica_cap": 0}, "replica_cap must be >= 1 or None"),
    ):
        with pytest.raises(ValueError, match=match):
            AlwaysOnPolicy(**bad)
