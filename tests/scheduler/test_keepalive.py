"""keep-alive: scale to zero exactly when the idle window has passed; presets."""

from __future__ import annotations

import json

import pytest

from scheduler.policies.keepalive import KeepAlivePolicy
from scheduler.registry import available_policies, create_policy
from tests.scheduler.sched_helpers import fobs, obs, step
from tests.scheduler.sim_scenarios import run_scenario


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


def test_each_replica_expires_on_its_own_in_the_simulator() -> None:
    """Hand-computed: 3 concurrent 5 s requests at 0.5 s, then one at 30.5 s; window 60 s.

    Scale-out on demand starts 3 replicas (ready at 1.5 s, busy until 6.5 s). The tick ending
    at 7 s sees their completions, so slots 1-3 were last used at 7 s. The request at 30.5 s
    runs on replica 1 until 35.5 s; its completion is seen at 36 s. Slots 2 and 3 expire at
    7 + 60 = 67 s, slot 1 at 36 + 60 = 96 s. Holding the peak pool (the old policy) would
    keep 3 replicas until 96 s.
    """
    run = run_scenario(
        KeepAlivePolicy(window_s=60), {"f": [0.5, 0.5, 0.5, 30.5]}, 120.0, service_s=5.0
    )
    assert run.cold_starts == 3
    assert [run.alive_at(t) for t in (1, 7, 30, 36, 66)] == [3, 3, 3, 3, 3]
    assert [run.alive_at(t) for t in (67, 80, 95)] == [1, 1, 1]
    assert [run.alive_at(t) for t in (96, 119)] == [0, 0]
    # idle replica-s from the 1 s samples (alive - busy): 3 starting at the 1 s sample, none
    # at 2-6 s (all busy), 3 at each of 7..66 s less replica 1 busy at 31..35 s, 1 at 67..95 s
    assert run.idle_replica_s == pytest.approx(3 * 1 + (3 * 60 - 5) + 29 * 1)


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
    assert d.functions["a"].reason == "1 replica(s) used within window 10s"
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
    assert state == {"last_use_s": {"f": []}, "prev_inflight": {"f": 0}}
    b = KeepAlivePolicy(window_s=30)
    b.load_state_dict(state)
    assert step(b, 1.0, replicas_ready=0).functions["f"].reason == "never used"
    c = KeepAlivePolicy(window_s=30)
    c.load_state_dict({})
    assert c.state_dict() == {"last_use_s": {}, "prev_inflight": {}}
