"""The online ``aquatope-config`` policy, driven tick by tick by a synthetic workflow.

The "platform" here is a synthetic problem: each tick the observation carries the mean
service time each function would have at the limits the policy last asked for, and the
arrivals of the current load. No I/O, no clock: ``now_s`` advances by ``tick_s``.
"""

from __future__ import annotations

import numpy as np

from scheduler import Observation, create_policy
from scheduler.configure.space import Configuration, FunctionConfig
from scheduler.policy import FunctionObservation
from scheduler.problems import chain_problem
from testbed.core.config import Limits


class Driver:
    def __init__(self, seed: int = 0) -> None:
        self.problem = chain_problem(2)
        self.workflow = self.problem.workflow()
        self.limits = {f: Limits() for f in self.problem.functions}
        self.rate = 20.0
        self.slowdown = 1.0
        self.now = 0.0
        self.rng = np.random.default_rng(seed)

    def observe(self) -> Observation:
        self.now += 1.0
        fns = {}
        for f in self.problem.functions:
            lim = self.limits[f]
            cpu = lim.cpu_cores or 6.0
            mem = lim.memory_mb or 10240
            service = float(self.problem.models[f].latency_s(cpu, mem)) * self.slowdown
            service *= float(np.exp(self.rng.normal(0, 0.03)))
            fns[f] = FunctionObservation(
                name=f,
                arrivals=int(self.rng.poisson(self.rate)),
                completions=int(self.rate),
                mean_service_s=service,
                replicas_ready=1 + int(self.rate * service),
                limits=lim,
            )
        return Observation(
            now_s=self.now, tick_s=1.0, functions=fns, workflows={self.workflow.name: self.workflow}
        )

    def step(self, policy) -> object:  # type: ignore[no-untyped-def]
        decision = policy.decide(self.observe())
        for name, fd in decision.functions.items():
            if fd.limits is not None:
                self.limits[name] = fd.limits
        return decision


def _config(limits: dict[str, Limits]) -> Configuration:
    return Configuration.of(
        {
            f: FunctionConfig(lim.cpu_cores or 6.0, lim.memory_mb or 10240)
            for f, lim in limits.items()
        }
    )


def test_tunes_to_a_cheaper_feasible_configuration_then_retunes_on_load_drift() -> None:
    driver = Driver()
    policy = create_policy(
        "aquatope-config",
        {"budget": "6", "trial_ticks": "3", "min_invocations": "10", "method": "power-tuning"},
    )
    first = driver.step(policy)
    assert first.valid and all(fd.limits for fd in first.functions.values())
    start = _config(driver.limits)
    ticks = 0
    while policy.phase != "steady":
        driver.step(policy)
        ticks += 1
        assert ticks < 100, "tuning never finished"
    best = _config(driver.limits)
    p = driver.problem
    assert p.true_latency_s(best) <= p.qos_target_s * 1.05
    assert p.true_cost_usd(best) < p.true_cost_usd(start) / 2
    assert len(policy.samples) == 6
    # stable load and latency: no re-tuning for a long while (no timer)
    for _ in range(60):
        driver.step(policy)
    assert policy.phase == "steady" and policy.episode == 0
    # the load quadruples and the functions slow down: detected within a few ticks
    driver.rate, driver.slowdown = 80.0, 1.6
    for _ in range(15):
        driver.step(policy)
        if policy.phase == "tuning":
            break
    assert policy.phase == "tuning" and policy.episode == 1
    assert "drift" in policy.last_reason


def test_state_survives_a_restart() -> None:
    driver = Driver()
    policy = create_policy(
        "aquatope-config",
        {"budget": "4", "trial_ticks": "2", "min_invocations": "5", "method": "power-tuning"},
    )
    for _ in range(7):
        driver.step(policy)
    state = policy.state_dict()
    clone = create_policy(
        "aquatope-config",
        {"budget": "4", "trial_ticks": "2", "min_invocations": "5", "method": "power-tuning"},
    )
    clone.load_state_dict(state)
    assert clone.state_dict() == state
    assert len(clone.samples) == len(policy.samples) >= 2


def test_declines_without_a_workflow() -> None:
    policy = create_policy("aquatope-config")
    obs = Observation(now_s=1.0, tick_s=1.0, functions={})
    assert not policy.decide(obs).valid
