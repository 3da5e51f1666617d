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

DECLARED = Limits(cpu_cores=2.0, memory_mb=1024)


class Driver:
    """Declared limits 2 cores / 1 GiB; requests state each function's memory need unless
    ``requests_mb`` says otherwise. A replica below its need is OOM-killed: its calls fail."""

    def __init__(self, seed: int = 0, requests_mb: int | None = None) -> None:
        self.problem = chain_problem(2)
        self.workflow = self.problem.workflow()
        self.limits = {f: DECLARED for f in self.problem.functions}
        self.requests = {
            f: Limits(memory_mb=requests_mb or m.memory_need_mb)
            for f, m in self.problem.models.items()
        }
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
            oom = not np.isfinite(service)
            fns[f] = FunctionObservation(
                name=f,
                arrivals=int(self.rng.poisson(self.rate)),
                completions=0 if oom else int(self.rate),
                errors=int(self.rate) if oom else 0,
                mean_service_s=None if oom else service,
                replicas_ready=1 if oom else 1 + int(self.rate * service),
                limits=lim,
                oom_kills=1 if oom else 0,
                requests=self.requests[f],
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
    assert policy.trials_run() == 6
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


def test_starts_at_the_declared_limits_not_at_the_space_maximum() -> None:
    driver = Driver()
    policy = create_policy("aquatope-config", {"budget": "3", "trial_ticks": "2"})
    first = driver.step(policy)
    assert all(fd.limits == DECLARED for fd in first.functions.values())
    # the space is bounded around the declared limits (2x headroom), floored at the requests
    space = policy._space
    for f in space.functions:
        assert f.cpu_values.max() <= 4.0 and f.memory_values.max() <= 2048
        assert f.memory_values.min() >= driver.problem.models[f.name].memory_need_mb


def test_an_oom_killing_trial_is_rolled_back_in_the_same_tick_and_its_region_excluded() -> None:
    # the stack under-declares: requests say 128 MB, fn-1 needs 192 MB (fn-0 needs 128)
    driver = Driver(requests_mb=128)
    policy = create_policy(
        "aquatope-config",
        {"budget": "12", "trial_ticks": "2", "min_invocations": "5", "method": "random"},
    )
    driver.step(policy)
    oom_ticks = 0
    killed: dict[str, int] = {}
    for _ in range(80):
        obs = driver.observe()
        decision = policy.decide(obs)
        for name, fd in decision.functions.items():
            if fd.limits is not None:
                driver.limits[name] = fd.limits
        ooms = [f for f, o in obs.functions.items() if o.oom_kills]
        if ooms:
            oom_ticks += 1
            for f in ooms:
                killed[f] = max(killed.get(f, 0), obs.functions[f].limits.memory_mb or 0)
            # rolled back in this very tick: what goes out no longer OOMs
            assert "rolled back" in decision.reason or "raised" in decision.reason
            assert np.isfinite(driver.problem.true_latency_s(_config(driver.limits)))
        for f, mem in killed.items():
            assert driver.limits[f].memory_mb > mem, "a trial re-entered an OOM region"
            assert policy.floor_mb(f) > mem
        if policy.phase == "steady":
            break
    assert killed == {"fn-1": killed.get("fn-1", 0)} and oom_ticks >= 1, killed
    oom_trials = [s for s in policy.samples if "OOM" in s.measurement.detail]
    assert all(s.measurement.failed for s in oom_trials)
    assert len(oom_trials) == oom_ticks <= policy.rollbacks  # each OOM cost exactly one tick
    # the exclusion and the learned floor survive a restart
    clone = create_policy("aquatope-config", {"method": "random"})
    clone.load_state_dict(policy.state_dict())
    assert clone.floor_mb("fn-1") == policy.floor_mb("fn-1") > killed["fn-1"]
    assert [s.measurement.stage_latency_s for s in clone.samples] == [
        s.measurement.stage_latency_s for s in policy.samples
    ]
    assert [s.measurement.stage_replica_s for s in clone.samples] == [
        s.measurement.stage_replica_s for s in policy.samples
    ]
    served = [s for s in policy.samples if not s.measurement.failed]
    assert served and all(set(s.measurement.stage_replica_s) == set(driver.limits) for s in served)


def test_memory_never_goes_below_a_reported_peak_rss_plus_margin() -> None:
    from dataclasses import replace

    driver = Driver(requests_mb=128)
    policy = create_policy(
        "aquatope-config",
        {"budget": "10", "trial_ticks": "2", "min_invocations": "5", "method": "random"},
    )
    for _ in range(60):
        obs = driver.observe()
        fns = {f: replace(o, peak_rss_mb=300.0) for f, o in obs.functions.items()}
        decision = policy.decide(replace(obs, functions=fns))
        for name, fd in decision.functions.items():
            assert fd.limits is not None and fd.limits.memory_mb >= 375  # 300 MB + 25 %
            driver.limits[name] = fd.limits
