"""keep-alive: scale to zero exactly when the idle window has passed; presets."""

from __future__ import annotations

import json

import pytest

from scheduler.policies.keepalive import KeepAlivePolicy
from scheduler.registry import available_policies, create_policy
from tests.scheduler.sched_helpers import fobs, obs, step


def test_presets_and_parameter() -> None:
    policies = available_policies()
    assert {"keep-alive", "keepalive-openwhisk", "keepalive-knative"} <= set(policies)
    ow = create_policy("keepalive-openwhisk")
    kn = create_policy("keepalive-knative")
    assert isinstance(ow, KeepAlivePolicy) and ow.window_s == 600.0
    assert isinstance(kn, KeepAlivePolicy) and kn.window_s == 60.0
    plain = create_policy("keep-alive", {"window_s": "120"})
    assert isinstance(plain, KeepAlivePolicy) and plain.window_s == 120.0
    assert "window_s" not in policies["keepalive-knative"].parameters


def test_scale_to_zero_exactly_after_window() -> None:
    policy = create_policy("keepalive-knative")
    # request at t=10 (arrived during the tick ending at 10)
    assert step(policy, 10.0, arrivals=1).functions["f"].replicas == 1
    for t in range(11, 70):  # idle 1..59 s: still warm
        d = step(policy, float(t))
        assert d.functions["f"].replicas == 1, t
    d = step(policy, 70.0)  # idle 60 s == window
    assert d.functions["f"].replicas == 0
    assert "window" in d.functions["f"].reason
    # a request resets the window; the gateway's on-demand replica is kept
    d = step(policy, 75.0, arrivals=2, replicas_ready=1, target_replicas=1)
    assert d.functions["f"].replicas == 1
    assert step(policy, 134.0, replicas_ready=1).functions["f"].replicas == 1
    assert step(policy, 135.0, replicas_ready=1).functions["f"].replicas == 0


def test_inflight_counts_as_activity_and_never_used_stays_zero() -> None:
    policy = KeepAlivePolicy(window_s=5)
    assert step(policy, 0.0, replicas_ready=0).functions["f"].replicas == 0
    step(policy, 1.0, arrivals=1)
    for t in range(2, 20):  # a 20 s request keeps it active
        assert step(policy, float(t), inflight=1).functions["f"].replicas == 1
    assert step(policy, 23.0).functions["f"].replicas == 1  # last active at 19
    assert step(policy, 24.0).functions["f"].replicas == 0


def test_warm_replica_lost_inside_window_is_asked_back() -> None:
    policy = KeepAlivePolicy(window_s=60)
    step(policy, 0.0, arrivals=1)
    d = step(policy, 5.0, replicas_ready=0, target_replicas=0)
    assert d.functions["f"].replicas == 1


def test_state_round_trip_through_json() -> None:
    a = KeepAlivePolicy(window_s=30)
    step(a, 0.0, arrivals=1)
    b = KeepAlivePolicy(window_s=30)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert step(b, 29.0).functions["f"].replicas == 1
    assert step(b, 30.0).functions["f"].replicas == 0


def test_one_arrival_or_one_completion_is_use_and_functions_are_decided_apart() -> None:
    policy = KeepAlivePolicy(window_s=10)
    idle = {n: fobs(n, replicas_ready=0) for n in ("c", "a", "b")}
    d = policy.decide(obs(0.0, idle))
    assert {n: (fd.replicas, fd.reason) for n, fd in d.functions.items()} == {
        n: (0, "never used") for n in ("c", "a", "b")
    }
    d = policy.decide(
        obs(
            20.0,
            {  # "c", never used, comes first: the others are still decided
                "c": fobs("c", replicas_ready=0),
                "a": fobs("a", replicas_ready=0, arrivals=1),
                "b": fobs("b", replicas_ready=0, completions=1),
            },
        )
    )
    assert {n: fd.replicas for n, fd in d.functions.items()} == {"c": 0, "a": 1, "b": 1}
    assert d.functions["a"].reason == "idle 0s < window 10s"
    assert d.reason == "keep-alive 10s"


def test_first_seen_with_one_replica_starting_keeps_it_for_the_window() -> None:
    policy = KeepAlivePolicy(window_s=10)
    kw = {"replicas_ready": 0, "replicas_starting": 1, "target_replicas": 1}
    assert step(policy, 0.0, **kw).functions["f"].replicas == 1
    assert step(policy, 9.0, **kw).functions["f"].replicas == 1
    assert step(policy, 10.0, **kw).functions["f"].replicas == 0


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep-alive: window_s must be positive, got 0"):
        KeepAlivePolicy(window_s=0)
    assert KeepAlivePolicy(window_s=0.5).window_s == 0.5


def test_never_used_survives_a_state_round_trip() -> None:
    a = KeepAlivePolicy(window_s=30)
    step(a, 0.0, replicas_ready=0)
    state = json.loads(json.dumps(a.state_dict()))
    assert state == {"last_active_s": {"f": None}}
    b = KeepAlivePolicy(window_s=30)
    b.load_state_dict(state)
    assert step(b, 1.0, replicas_ready=0).functions["f"].reason == "never used"
    c = KeepAlivePolicy(window_s=30)
    c.load_state_dict({})
    assert c.state_dict() == {"last_active_s": {}}
