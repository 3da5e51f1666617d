"""Every baseline: registered with a description, pure, and resumable through JSON state."""

from __future__ import annotations

import json
import random

import pytest

from scheduler.policy import FunctionObservation, Observation
from scheduler.registry import available_policies, create_policy

BASELINES = ["always-on", "keep-alive", "keepalive-openwhisk", "keepalive-knative", "knative-kpa"]
BASELINES += ["keepalive-lambda", "static-pool", "oracle"]
BASELINES.append("hybrid-histogram")
BASELINES.append("openfaas-ce")


def _random_run(seed: int, n_ticks: int) -> list[Observation]:
    rng = random.Random(seed)
    rates = [rng.choice([0.0, 0.01, 0.2, 3.0, 30.0]) for _ in range(6)]
    out = []
    for t in range(n_ticks):
        fns = {}
        for i, rate in enumerate(rates):
            burst = 5 if 40 <= t < 50 and i == 4 else 1
            arrivals = sum(rng.random() < rate * burst / 10 for _ in range(10))
            busy = rng.randint(0, arrivals)
            ready = rng.randint(0, 3)
            fns[f"f{i}"] = FunctionObservation(
                name=f"f{i}",
                arrivals=arrivals,
                completions=arrivals,
                inflight=busy,
                mean_service_s=0.2 if arrivals else None,
                replicas_ready=ready,
                target_replicas=ready,
            )
        out.append(Observation(now_s=10.0 * t, tick_s=10.0, functions=fns))
    return out


def test_registry_describes_every_baseline() -> None:
    policies = available_policies()
    for name in BASELINES:
        info = policies[name]
        assert info.description and len(info.description) < 100
        first = _random_run(0, 1)[0]
        decision = create_policy(name).decide(first)
        assert decision.valid, decision.reason
        assert set(decision.functions) == set(first.functions)


@pytest.mark.parametrize("name", BASELINES)
def test_policies_are_pure_two_instances_agree(name: str) -> None:
    # no clock, randomness or shared state besides the observations: same input, same output
    a, b = create_policy(name), create_policy(name)
    for obs in _random_run(3, 60):
        assert a.decide(obs) == b.decide(obs)


@pytest.mark.parametrize("name", BASELINES)
def test_state_round_trips_through_json_mid_run(name: str) -> None:
    run = _random_run(1, 120)
    a = create_policy(name)
    for obs in run[:80]:
        a.decide(obs)
    b = create_policy(name)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for obs in run[80:]:
        assert a.decide(obs) == b.decide(obs)


@pytest.mark.parametrize("name", BASELINES)
def test_decisions_cover_every_function_within_bounds(name: str) -> None:
    policy = create_policy(name)
    for obs in _random_run(2, 60):
        decision = policy.decide(obs)
        assert set(decision.functions) == set(obs.functions)
        for fd in decision.functions.values():
            assert fd.replicas is None or 0 <= fd.replicas <= 20
            assert fd.reason


def test_openfaas_ce_only_observes() -> None:
    policy = create_policy("openfaas-ce")
    for obs in _random_run(2, 30):
        decision = policy.decide(obs)
        assert decision.valid and set(decision.functions) == set(obs.functions)
        for name, fn in decision.functions.items():
            assert fn.replicas is None and fn.limits is None
            assert f"target {obs.functions[name].target_replicas}" in fn.reason
