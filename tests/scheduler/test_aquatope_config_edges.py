"""``aquatope-config``'s edges, with a scripted configurator: the proposals are fixed, so every
trial, sample, rollback and reason can be worked out by hand from the module docstring.

The workflow is ``fa -> fb`` (QoS: p90 under 1 s), declared at 2 cores / 1 GiB with a 256 MB
request; the "platform" reports what the test says and applies the limits each decision
sets. One tick is one second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from scheduler.configure.base import ConfigSample
from scheduler.configure.objectives import LatencyConstraint
from scheduler.configure.space import Configuration, FunctionConfig, SearchSpace
from scheduler.policies import aquatope_config
from scheduler.policies.aquatope_config import AquatopeConfigPolicy, Exclusion
from scheduler.policy import Decision, FunctionObservation, Observation
from testbed.core.config import Limits
from testbed.core.platform import QoS, Stage, Workflow
from testbed.core.prices import decoupled_usd_per_s

WF = Workflow(
    name="wf",
    qos=QoS(target_s=1.0, percentile=90.0),
    stages=(Stage("a", "fa"), Stage("b", "fb", after=("a",))),
)
FNS = ("fa", "fb")
DECLARED = Limits(cpu_cores=2.0, memory_mb=1024)
NEED = Limits(memory_mb=256)


def cfg(a_cpu: float, a_mb: int, b_cpu: float, b_mb: int) -> Configuration:
    return Configuration.of({"fa": FunctionConfig(a_cpu, a_mb), "fb": FunctionConfig(b_cpu, b_mb)})


SAFE = cfg(2.0, 1024, 2.0, 1024)
P1 = cfg(1.0, 512, 1.0, 512)


class Scripted:
    """A configurator that proposes a fixed list, then stops."""

    name = "scripted"
    source = "scripted"

    def __init__(
        self, space: SearchSpace, constraints: Sequence[Any], seed: int, plan: list[Any]
    ) -> None:
        self.space = space
        self.constraints = list(constraints)
        self.seed = seed
        self.plan = list(plan)
        self.asked: list[int] = []

    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        self.asked.append(len(samples))
        return self.plan.pop(0) if self.plan else None


class Script:
    """Replaces the configurator factory: one plan per tuning episode."""

    def __init__(self) -> None:
        self.plans: list[list[Configuration]] = []
        self.made: list[Scripted] = []

    def make(
        self,
        method: str,
        space: SearchSpace,
        constraints: Sequence[Any],
        *,
        seed: int = 0,
        workflow: Workflow | None = None,
    ) -> Scripted:
        assert workflow is WF
        made = Scripted(space, constraints, seed, self.plans.pop(0) if self.plans else [])
        self.made.append(made)
        return made


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    s = Script()
    monkeypatch.setattr(aquatope_config, "make_configurator", s.make)
    return s


class Plat:
    """Reports one tick per call (defaults: 10 calls, each completed, services 0.2 s and
    0.3 s, one ready replica each) and applies the decision's limits."""

    def __init__(
        self,
        policy: AquatopeConfigPolicy,
        *,
        report_limits: bool = True,
        in_use_mb: Mapping[str, int] | None = None,
    ) -> None:
        self.policy = policy
        self.limits = dict.fromkeys(FNS, DECLARED)
        self.report_limits = report_limits
        # a kernel refuses a memory limit below what a replica uses: the old limit stays
        self.in_use_mb = dict(in_use_mb or {})
        self.now = 0.0

    def tick(
        self,
        *,
        arrivals: int = 10,
        e2e: Sequence[float] = (),
        service: Mapping[str, float | None] | None = None,
        errors: Mapping[str, int] | None = None,
        completions: Mapping[str, int] | None = None,
        ready: Mapping[str, int] | None = None,
        starting: Mapping[str, int] | None = None,
        oom: Sequence[str] = (),
        canary: Mapping[str, tuple[float, int]] | None = None,
        canary_oom: Sequence[str] = (),
        canary_limits: Mapping[str, Limits] | None = None,
    ) -> Decision:
        self.now += 1.0
        service = {"fa": 0.2, "fb": 0.3} if service is None else service
        fns = {
            f: FunctionObservation(
                name=f,
                arrivals=arrivals,
                completions=(completions or {}).get(f, arrivals),
                errors=(errors or {}).get(f, 0),
                mean_service_s=service.get(f),
                replicas_ready=(ready or {}).get(f, 1),
                replicas_starting=(starting or {}).get(f, 0),
                limits=self.limits[f] if self.report_limits else Limits(),
                requests=NEED,
                oom_kills=1 if f in oom else 0,
            )
            for f in FNS
        }
        canaries = {}
        for f, (mean_s, calls) in (canary or {}).items():  # (mean service s, calls) each
            canaries[f] = FunctionObservation(
                name=f"{f}-canary",
                arrivals=calls,
                completions=calls,
                mean_service_s=mean_s,
                replicas_ready=1,
                oom_kills=1 if f in canary_oom else 0,
                limits=(canary_limits or {}).get(f, Limits()),
            )
        obs = Observation(
            now_s=self.now,
            tick_s=1.0,
            functions=fns,
            workflows={"wf": WF},
            workflow_latency_s={"wf": tuple(e2e)} if e2e else {},
            canaries=canaries,
        )
        decision = self.policy.decide(obs)
        for name, fd in decision.functions.items():
            if fd.limits is not None and (fd.limits.memory_mb or 0) >= self.in_use_mb.get(name, 0):
                self.limits[name] = fd.limits
        return decision


def limits_of(config: Configuration) -> dict[str, Limits]:
    return {f: c.to_limits() for f, c in config.items()}


def applied(d: Decision) -> dict[str, Limits | None]:
    return {f: fd.limits for f, fd in d.functions.items()}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"budget": 0}, "budget, trial_ticks and min_invocations must be >= 1"),
        ({"trial_ticks": 0}, "budget, trial_ticks and min_invocations must be >= 1"),
        ({"min_invocations": 0}, "budget, trial_ticks and min_invocations must be >= 1"),
        ({"memory_margin": -0.1}, "memory_margin must be in"),
        ({"memory_margin": 2.5}, "memory_margin must be in"),
        ({"space_headroom": 0.9}, "space_headroom must be >= 1"),
        ({"error_burst": 0.0}, "error_burst and violation_budget must be in"),
        ({"error_burst": 1.0}, "error_burst and violation_budget must be in"),
        ({"error_burst": 1.5}, "error_burst and violation_budget must be in"),
        ({"violation_budget": 0.0}, "error_burst and violation_budget must be in"),
        ({"violation_budget": 1.0}, "error_burst and violation_budget must be in"),
        ({"rollback_factor": 1.0}, "rollback_factor must be > 1"),
        ({"trials": "sideways"}, "trials must be one of in-place, canary"),
        ({"canary_share": 0.0}, "canary_share must be in"),
        ({"canary_share": 1.5}, "canary_share must be in"),
        ({"min_canary_calls": 0}, "min_canary_calls >= 1"),
    ],
)
def test_options_out_of_range_are_refused(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AquatopeConfigPolicy(**bad)


def test_options_at_their_bounds_are_accepted() -> None:
    for ok in (
        {"memory_margin": 0.0},
        {"memory_margin": 2.0},
        {"space_headroom": 1.0},
        {"error_burst": 0.5, "violation_budget": 0.5},
        {"rollback_factor": 1.01},
    ):
        policy = AquatopeConfigPolicy(**ok)
        assert policy.last_reason == ""  # nothing decided yet
        assert policy.phase == "tuning" and policy.trials_total == 0


def test_a_trial_is_measured_as_documented(script: Script) -> None:
    script.plans = [[P1]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=20, seed=3)
    plat = Plat(policy)
    first = plat.tick()
    assert applied(first) == limits_of(SAFE)
    assert first.reason == "tuning episode 0: observing the safe incumbent"
    # the configurator is built around the declared limits, for the workflow's QoS
    made = script.made[0]
    assert made.seed == 3 and made.constraints == [LatencyConstraint(1.0, 90.0)]
    for space in made.space.functions:
        assert space.cpu_values.max() == pytest.approx(4.0)  # 2x the declared 2 cores
        assert space.memory_values.min() == 256 and space.memory_values.max() == 2048
    # two ticks at the safe configuration; fb has 2 ready and 1 starting replicas
    crowd = {"ready": {"fa": 1, "fb": 2}, "starting": {"fb": 1}}
    d = plat.tick(e2e=(0.1, 0.2, 0.3, 0.4, 0.5), errors={"fa": 1}, **crowd)
    assert d.reason == "trial 1/3: observing (1/2 ticks)"
    d = plat.tick(e2e=(0.6, 0.7, 0.8, 0.9, 1.0), service={"fa": 0.4, "fb": 0.3}, **crowd)
    # exactly min_invocations (20) calls: the trial counts
    assert len(policy.samples) == 1 and policy.trials_total == 1
    assert applied(d) == limits_of(P1) and d.reason == f"trial 2/3: {P1}"
    assert made.asked == [1]
    s = policy.samples[0]
    assert s.config == SAFE and s.source == "safe"
    m = s.measurement
    assert not m.failed and m.requests == 20 and m.detail == "online e2e"
    # p90 of 0.1 .. 1.0 (linear between the 9th and 10th of ten): 0.9 + 0.1 * 0.1
    assert m.latency_s == pytest.approx(0.91)
    # population std of 0.1 * (1 .. 10) is 0.1 * sqrt((10^2 - 1) / 12), over sqrt(10)
    assert m.noise_s == pytest.approx(0.1 * math.sqrt(99 / 12) / math.sqrt(10))
    # (1 + 3 replicas) x 1 s x 2 ticks at 2 cores / 1 GiB, over 20 calls
    assert m.cost_usd == pytest.approx(8 * decoupled_usd_per_s(2.0, 1024) / 20)
    assert m.error_rate == pytest.approx(1 / 40)  # 1 error, 2 functions x 2 ticks x 10 done
    # per-stage p90 of the per-tick means; replica-seconds per call
    assert m.stage_latency_s == pytest.approx({"fa": 0.2 + 0.9 * 0.2, "fb": 0.3})
    assert m.stage_replica_s == pytest.approx({"fa": 2 / 20, "fb": 6 / 20})


def test_unreported_limits_are_priced_at_one_core_and_128_mb(script: Script) -> None:
    policy = AquatopeConfigPolicy(budget=1, trial_ticks=2, min_invocations=10)
    plat = Plat(policy, report_limits=False)
    for _ in range(3):
        plat.tick()
    m = policy.samples[0].measurement
    assert m.detail == "online estimate"  # no end-to-end latencies: the critical path
    assert m.latency_s == pytest.approx(0.2 + 0.3)
    assert m.cost_usd == pytest.approx(4 * decoupled_usd_per_s(1.0, 128) / 20)


def test_an_oom_rolls_back_raises_the_floor_and_skips_proposals_below_it(
    script: Script,
) -> None:
    p2 = cfg(1.0, 576, 1.0, 512)  # under fa's new floor
    p3 = cfg(1.0, 704, 1.0, 512)
    script.plans = [[P1, p2, p3]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10)
    plat = Plat(policy)
    for _ in range(3):
        d = plat.tick()
    assert applied(d) == limits_of(P1)
    d = plat.tick(oom=("fa",), errors={"fa": 10}, completions={"fa": 0}, service={"fb": 0.3})
    assert applied(d) == limits_of(SAFE)
    assert d.reason.startswith("trial rolled back (OOM kill of fa); ")
    # 512 MB killed: the floor is the larger of 512 + 25 % and 512 + one step, on the lattice
    assert policy.floor_mb("fa") == 640 and policy.floor_mb("fb") == 256
    assert policy.rollbacks == 1 and policy.trials_total == 2
    assert policy.exclusions == [Exclusion(P1, "fa", "OOM kill of fa")]
    failed, skipped = policy.samples[1:]
    assert failed.config == P1 and failed.measurement.failed
    assert failed.measurement.latency_s == pytest.approx(3.0)  # 3x the target
    assert failed.measurement.error_rate == pytest.approx(1.0)  # 10 errors, 10 done by fb
    assert failed.measurement.requests == 10
    assert skipped.config == p2 and skipped.source == "excluded"
    assert skipped.measurement.detail == "excluded: fa memory 576 MB below its floor 640 MB"
    assert policy.trials_run() == 2
    d = plat.tick()  # one tick at the incumbent, then the next allowed proposal
    assert applied(d) == limits_of(p3) and d.reason == f"trial 3/3: {p3}"
    # all of it (the failed trial's error rate and detail, the floor, the exclusion) is state
    state = json.loads(json.dumps(policy.state_dict()))
    clone = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10)
    clone.load_state_dict(state)
    assert clone.state_dict() == state
    assert clone.samples == policy.samples and clone.exclusions == policy.exclusions
    assert clone.floor_mb("fa") == 640


def test_a_memory_limit_the_platform_refuses_is_rolled_back_like_an_oom(script: Script) -> None:
    # fa already uses 600 MB: the kernel keeps its 1 GiB limit when P1 asks for 512 MB, so
    # the tick ran at the old limit, not at P1, and P1 would OOM once the limit took hold
    p2 = cfg(1.0, 704, 1.0, 512)
    script.plans = [[P1, p2]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10)
    plat = Plat(policy, in_use_mb={"fa": 600})
    for _ in range(3):
        d = plat.tick()
    assert applied(d) == limits_of(P1) and plat.limits["fa"] == DECLARED  # refused
    d = plat.tick()
    assert applied(d) == limits_of(SAFE)
    assert d.reason.startswith(
        "trial rolled back (memory of fa refused at 512 MB (kept at 1024 MB)); "
    )
    assert policy.floor_mb("fa") == 640 and policy.floor_mb("fb") == 256
    assert policy.rollbacks == 1 and policy.exclusions[-1].function == "fa"
    assert policy.samples[-1].config == P1 and policy.samples[-1].measurement.failed
    plat.tick()
    d = plat.tick()  # p2 raises fa's memory: applied, and nothing is refused
    assert plat.limits == limits_of(p2) and d.reason == "trial 3/3: observing (1/2 ticks)"
    assert policy.rollbacks == 1


def test_a_trial_that_ran_in_a_burst_is_priced_at_the_episodes_load(script: Script) -> None:
    # P1 at the safe trial's 10 calls per tick; the dearer BIG while a burst brings 40: per
    # its own invocations BIG would cost half of P1 and be kept
    big = cfg(1.5, 768, 1.5, 768)
    script.plans = [[P1, big]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10)
    plat = Plat(policy)
    for _ in range(5):
        d = plat.tick()
    assert applied(d) == limits_of(big)
    plat.tick(arrivals=40)
    d = plat.tick(arrivals=40)
    assert policy.best == P1 and applied(d) == limits_of(P1)
    for sample in policy.samples:  # 2 ticks of 1 s, per invocation at 10 calls a second
        per_s = sum(decoupled_usd_per_s(f.cpu_cores, f.memory_mb) for _, f in sample.config.items())
        assert sample.measurement.cost_usd == pytest.approx(2 * per_s / 20)
    burst = policy.samples[-1]
    assert burst.measurement.stage_replica_s == {"fa": pytest.approx(0.1), "fb": pytest.approx(0.1)}
    assert policy.reference_rate == pytest.approx(10.0)
    state = json.loads(json.dumps(policy.state_dict()))
    clone = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10)
    clone.load_state_dict(state)
    assert clone.reference_rate == pytest.approx(10.0)


def test_the_oom_floor_is_one_memory_step_above_with_no_margin(script: Script) -> None:
    script.plans = [[P1]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10, memory_margin=0)
    plat = Plat(policy)
    for _ in range(3):
        plat.tick()
    plat.tick(oom=("fa",))
    assert policy.floor_mb("fa") == 512 + 64


def _at_p1(script: Script, **options: Any) -> tuple[AquatopeConfigPolicy, Plat]:
    script.plans = [[P1, cfg(1.0, 768, 1.0, 768)]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10, **options)
    plat = Plat(policy)
    for _ in range(3):
        d = plat.tick()
    assert applied(d) == limits_of(P1)
    return policy, plat


def test_an_error_burst_is_a_share_of_the_finished_calls(script: Script) -> None:
    policy, plat = _at_p1(script)
    # 3 of 100 finished calls failed: within the 5 % tolerance
    d = plat.tick(errors={"fa": 3}, completions={"fa": 47, "fb": 50})
    assert d.reason == "trial 2/3: observing (1/2 ticks)" and policy.rollbacks == 0
    # 2 of 20: a burst
    d = plat.tick(errors={"fa": 2}, completions={"fa": 8, "fb": 10})
    assert d.reason.startswith("trial rolled back (error burst (2 of 20 calls failed))")
    assert policy.rollbacks == 1 and policy.exclusions[-1].function == ""


def test_a_trial_with_exactly_its_violation_budget_over_the_target_counts(
    script: Script,
) -> None:
    policy, plat = _at_p1(script, violation_budget=0.1)
    plat.tick(e2e=(0.5, 0.5, 0.5, 0.5, 1.2))
    d = plat.tick(e2e=(0.5,) * 5)  # 1 of 10 over: exactly 10 %
    assert policy.rollbacks == 0 and d.reason == f"trial 3/3: {cfg(1.0, 768, 1.0, 768)}"
    assert policy.samples[-1].config == P1
    assert policy.samples[-1].latency_s == pytest.approx(0.5 + 0.1 * 0.7)


def test_a_trial_over_its_violation_budget_rolls_back(script: Script) -> None:
    policy, plat = _at_p1(script, violation_budget=0.1)
    plat.tick(e2e=(0.5, 0.5, 0.5, 1.2, 1.2))  # its own p90 is 1.2 s: under 1.5x the target
    d = plat.tick(e2e=(0.5,) * 5)
    assert d.reason.startswith("trial rolled back (20.0% of the trial's requests over the QoS")
    assert policy.rollbacks == 1


def _rolled_back_in_a_surge(script: Script) -> tuple[AquatopeConfigPolicy, Plat]:
    policy, plat = _at_p1(script)  # the safe trial ran at 10 calls a second: the reference
    d = plat.tick(arrivals=100, e2e=SLOW)  # the last 4 ticks: 130 calls, 32.5 a second
    assert d.reason.startswith(
        "trial rolled back (tail 2 s over 1.5x the target) in a load surge (32.5/s against "
        "10/s): judged against the incumbent in the same surge; "
    )
    assert applied(d) == limits_of(SAFE) and plat.limits == limits_of(SAFE)
    # not judged yet: nothing recorded, nothing fenced off
    assert [s.config for s in policy.samples] == [SAFE] and policy.exclusions == []
    assert policy.retried == [P1] and policy.rollbacks == 1 and policy.trials_total == 2
    return policy, plat


SLOW = (2.0,) * 10  # a tail twice the target


def _hold(plat: Plat, *, e2e: Sequence[float]) -> tuple[int, Decision]:
    """Ticks while the incumbent holds (the surge: 100 calls, then 10 a second)."""
    held = 0
    d = plat.tick(arrivals=100, e2e=e2e)
    while d.reason.startswith("holding the incumbent while the load surges"):
        assert applied(d) == limits_of(SAFE)
        held += 1
        d = plat.tick(e2e=e2e)
    return held, d


def test_a_qos_breach_in_a_surge_the_incumbent_breaks_too_is_retried_once(
    script: Script,
) -> None:
    policy, plat = _rolled_back_in_a_surge(script)
    held, d = _hold(plat, e2e=SLOW)  # the incumbent is as slow in the same surge
    # the last 5 ticks under 20 calls a second again: the same trial, afresh
    assert held == 5 and applied(d) == limits_of(P1) and d.reason == f"trial 2/3: {P1}"
    state = json.loads(json.dumps(policy.state_dict()))
    assert state["retried"] == [P1.to_json()]
    d = plat.tick(arrivals=100, e2e=SLOW)  # a breach in a surge again: now it counts
    assert d.reason.startswith("trial rolled back (tail 2 s over 1.5x the target); ")
    assert policy.exclusions == [Exclusion(P1, "", "tail 2 s over 1.5x the target")]
    assert policy.samples[-1].config == P1 and policy.samples[-1].measurement.failed
    assert policy.rollbacks == 2 and policy.trials_total == 3


def test_a_qos_breach_in_a_surge_the_incumbent_carries_is_the_trials(script: Script) -> None:
    policy, plat = _rolled_back_in_a_surge(script)
    held, d = _hold(plat, e2e=(0.5,) * 10)  # the incumbent meets the QoS in the same surge
    why = "tail 2 s over 1.5x the target, where the incumbent met the QoS in the same surge"
    assert held == 5 and d.reason.startswith(f"trial rolled back ({why}); {P1} excluded; ")
    assert applied(d) == limits_of(SAFE)
    assert policy.exclusions == [Exclusion(P1, "", why)]
    failed = policy.samples[-1]
    assert failed.config == P1 and failed.measurement.failed
    assert failed.measurement.requests == 100  # the trial's surge tick, not the held ones
    assert policy.rollbacks == 1 and policy.trials_total == 2  # counted once
    d = plat.tick()  # then the next proposal, as after any rollback
    assert applied(d) == limits_of(cfg(1.0, 768, 1.0, 768))


def test_a_surge_is_judged_against_the_usual_rate_when_the_first_trial_caught_a_burst(
    script: Script,
) -> None:
    p2 = cfg(0.5, 512, 1.0, 512)  # less than the incumbent (P1, by then) gives fa
    script.plans = [[P1, p2]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=4, min_invocations=10, drift_window_ticks=1)
    plat = Plat(policy)
    for calls in (10, 100, 100, 10, 10):  # the safe trial caught a burst: 55 calls a second
        plat.tick(arrivals=calls)
    assert policy.reference_rate == pytest.approx(55.0)
    for _ in range(6):  # P1's trial, then two ticks of p2's, at the usual 10 a second
        d = plat.tick()
    assert applied(d) == limits_of(p2)
    # 28 calls a second over the last 5 ticks: not twice the reference, but twice the
    # median window (10 a second)
    d = plat.tick(arrivals=100, e2e=(2.0,) * 10)
    assert d.reason.startswith("trial rolled back (tail 2 s over 1.5x the target) in a load ")
    assert "(28/s against 10/s)" in d.reason and policy.exclusions == []


def test_a_qos_breach_with_all_the_incumbents_resources_is_the_loads(script: Script) -> None:
    big = cfg(2.0, 1024, 3.0, 1536)  # at least the safe configuration's CPU and memory
    script.plans = [[big]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=10)
    plat = Plat(policy)
    for _ in range(3):
        d = plat.tick(e2e=(0.5,) * 10)
    assert applied(d) == limits_of(big)
    d = plat.tick(e2e=(2.0,) * 10)  # over 1.5x the target, at the reference load
    assert d.reason == "trial 2/3: observing (1/2 ticks)" and policy.rollbacks == 0
    plat.tick(e2e=(2.0,) * 10)
    # measured as it was (over the QoS), but it fences off nothing: the safe configuration
    # met the QoS with less of everything
    assert policy.samples[-1].config == big and policy.samples[-1].latency_s == 2.0
    assert policy.exclusions == [] and policy.best == SAFE


def test_bursts_of_a_bursty_load_do_not_retune_a_lasting_change_does(script: Script) -> None:
    # one 40-tick trial, then steady; judged in windows of 4 ticks. The load: a burst of 2
    # ticks at 6x every 20 ticks (the tuning episode saw two of them), then every rate doubles
    policy = AquatopeConfigPolicy(
        budget=1, trial_ticks=40, min_invocations=10, drift_window_ticks=4
    )
    plat = Plat(policy)

    def run(ticks: int, scale: int) -> int:
        """Ticks until a new tuning episode starts (-1: none)."""
        for t in range(ticks):
            calls = 60 if t % 20 in (7, 8) else 10
            d = plat.tick(arrivals=calls * scale)
            if "drift detected" in d.reason:
                return t
        return -1

    assert run(440, 1) == -1 and policy.phase == "steady"  # 20 more bursts: the workload
    assert policy.episode == 0 and policy.best == SAFE
    lag = run(200, 2)
    assert policy.episode == 1 and 0 <= lag <= 60
    assert policy.last_reason.startswith("load drift detected: re-tuning")
    assert policy.retunes == [(plat.now, "load drift detected: re-tuning")]


def test_too_little_traffic_extends_a_trial_four_times_then_gives_up(script: Script) -> None:
    script.plans = [[P1]]
    policy = AquatopeConfigPolicy(budget=3, trial_ticks=2, min_invocations=100)
    plat = Plat(policy)
    plat.tick(arrivals=1)
    assert plat.tick(arrivals=1).reason == "trial 1/3: observing (1/2 ticks)"
    for _ in range(6):  # ticks 2 .. 7 of the trial
        assert plat.tick(arrivals=1).reason == "trial extended: too few invocations"
    d = plat.tick(arrivals=1)  # the 8th: 4 x trial_ticks
    s = policy.samples[0]
    assert s.config == SAFE and s.source == "excluded" and s.measurement.failed
    assert s.measurement.detail == "too little traffic" and s.measurement.requests == 8
    assert policy.trials_run() == 0 and policy.trials_total == 1
    assert applied(d) == limits_of(P1) and d.reason == f"trial 1/3: {P1}"


def _steady(script: Script) -> tuple[AquatopeConfigPolicy, Plat]:
    policy = AquatopeConfigPolicy(budget=1, trial_ticks=2, min_invocations=10, seed=5)
    plat = Plat(policy)
    plat.tick()
    plat.tick()
    d = plat.tick()
    assert policy.phase == "steady" and policy.best == SAFE
    assert d.reason == f"tuning done after 1 trials (budget used); keeping {SAFE}"
    return policy, plat


def test_steady_state_restored_from_json_detects_the_same_drift(script: Script) -> None:
    policy, plat = _steady(script)
    for _ in range(25):  # the detectors learn their reference, then watch
        assert plat.tick().reason == f"steady at the best feasible ({SAFE})"
    state = json.loads(json.dumps(policy.state_dict()))
    clone = AquatopeConfigPolicy(budget=1, trial_ticks=2, min_invocations=10, seed=5)
    clone.load_state_dict(state)
    assert clone.state_dict() == state
    assert clone.best == SAFE and clone.phase == "steady"
    twin = Plat(clone)
    twin.now = plat.now
    alarms = []
    for plat_ in (plat, twin):  # the load jumps eightfold and stays: at most 4 nats per window
        for tick in range(1, 9):  # against an alarm at 8, so it takes a third 2-tick window
            d = plat_.tick(arrivals=80)
            if d.reason != f"steady at the best feasible ({SAFE})":
                alarms.append(tick)
                break
        assert d.reason == (
            "load drift detected: re-tuning; tuning episode 1: observing the safe incumbent"
        )
    assert alarms == [5, 5]  # tick 1 closes a window of 10 and 80 calls
    assert policy.episode == clone.episode == 1
    assert policy.retunes == clone.retunes == [(plat.now, "load drift detected: re-tuning")]
    assert AquatopeConfigPolicy().state_dict()["retunes"] == []
    # a new episode gets a configurator of its own, seeded apart from the first
    assert script.made[0].seed == 5 and script.made[1].seed == 5 + 7919
    assert script.made[-1].seed == 5 + 7919


def test_one_slow_window_is_not_latency_drift_a_lasting_slowdown_is(script: Script) -> None:
    policy, plat = _steady(script)  # windows of 2 ticks
    steady = f"steady at the best feasible ({SAFE})"
    for tick in range(40):  # the tail at 0.4-0.44 s; every tenth window 3x slower (a burst
        slow = tick % 20 in (12, 13)  # the four reference windows did not see)
        d = plat.tick(e2e=(1.3 if slow else 0.4 + 0.02 * (tick % 3),) * 10)
        assert d.reason == steady
    slowed = 0  # then every window 1.6x slower
    while d.reason == steady and slowed < 8:
        d = plat.tick(e2e=(0.68,) * 10)
        slowed += 1
    assert d.reason.startswith("latency drift detected: re-tuning") and slowed <= 6
    assert policy.retunes == [(plat.now, "latency drift detected: re-tuning")]


def test_an_oom_at_the_kept_configuration_starts_over(script: Script) -> None:
    policy, plat = _steady(script)
    d = plat.tick(oom=("fb",))
    assert d.reason.startswith("OOM kill of fb at the kept configuration: re-tuning; ")
    assert policy.exclusions == [Exclusion(SAFE, "fb", "OOM kill of fb")]
    assert policy.floor_mb("fb") == 1280 and policy.best is None and policy.episode == 1


def test_exclusions_cover_what_gives_no_more_of_anything() -> None:
    qos = Exclusion(P1, "", "QoS missed")
    assert qos.covers(P1)
    assert qos.covers(cfg(0.5, 512, 1.0, 256))
    assert not qos.covers(cfg(1.1, 512, 1.0, 512))
    assert not qos.covers(cfg(1.0, 576, 0.5, 256))
    oom = Exclusion(P1, "fa", "OOM kill of fa")  # only fa's memory matters
    assert oom.covers(cfg(4.0, 512, 4.0, 4096))
    assert not oom.covers(cfg(0.5, 576, 0.5, 128))
    for ex in (qos, oom):
        assert Exclusion.from_json(json.loads(json.dumps(ex.to_json()))) == ex
    assert Exclusion.from_json({"config": P1.to_json()}) == Exclusion(P1, "", "")


def test_a_fresh_state_and_an_older_partial_one_load() -> None:
    fresh = AquatopeConfigPolicy()
    state = json.loads(json.dumps(fresh.state_dict()))
    clone = AquatopeConfigPolicy()
    clone.load_state_dict(state)
    assert clone.state_dict() == state and clone.safe is None and clone.best is None
    # a state written before the optional fields existed: their defaults
    old = AquatopeConfigPolicy()
    old.load_state_dict(
        {
            "samples": [
                {
                    "config": P1.to_json(),
                    "cost_usd": 1e-6,
                    "latency_s": 0.5,
                    "noise_s": 0.01,
                    "failed": False,
                    "requests": 20,
                }
            ]
        }
    )
    (s,) = old.samples
    assert s.config == P1 and s.source == "online"
    m = s.measurement
    assert (m.cost_usd, m.latency_s, m.noise_s, m.failed, m.requests) == (
        1e-6,
        0.5,
        0.01,
        False,
        20,
    )
    assert m.error_rate == 0.0 and m.detail == ""
    assert dict(m.stage_latency_s) == {} and dict(m.stage_replica_s) == {}
    assert old.phase == "tuning" and old.episode == 0 and old.rollbacks == 0
    assert old.trials_total == 0 and old.exclusions == [] and old.current is None
    assert old.oom_floor_mb == old.rss_floor_mb == old.declared_floor_mb == {}


def test_an_oom_kill_at_the_kept_declared_configuration_restarts_above_the_raised_floor(
    script: Script,
) -> None:
    """The kept configuration is the declared one; an OOM kill of fb there raises fb's floor,
    and the new episode's first configuration must respect it (it re-applied 1024 MB, which
    its own rule refuses, and fb was killed again)."""
    policy, plat = _steady(script)
    d = plat.tick(oom=("fb",))
    floor = policy.floor_mb("fb")
    assert floor > 1024
    assert d.reason.startswith("OOM kill of fb")  # a new episode from the incumbent
    assert applied(d)["fb"].memory_mb == floor
    assert policy.current is not None and policy.allowed(policy.current) == ""


def test_a_canary_trial_is_decided_and_measured_as_documented(script: Script) -> None:
    script.plans = [[P1]]
    policy = AquatopeConfigPolicy(
        budget=3, trial_ticks=2, min_invocations=20, trials="canary", min_canary_calls=2
    )
    plat = Plat(policy)
    d = plat.tick()
    assert applied(d) == limits_of(SAFE)  # the safe start runs on the functions themselves
    assert all(fd.end_canary and fd.canary is None for fd in d.functions.values())
    plat.tick(e2e=(0.5,) * 5)
    d = plat.tick(e2e=(0.5,) * 5)
    assert policy.samples[-1].config == SAFE  # 10 calls/s: the episode's reference rate
    # P1 goes to one canary per function (share 0.1); their own replicas keep SAFE
    assert applied(d) == limits_of(SAFE)
    assert {f: fd.canary for f, fd in d.functions.items()} == limits_of(P1)
    assert all(fd.canary_share == 0.1 and not fd.end_canary for fd in d.functions.values())
    # the canaries serve 0.3 s and 0.5 s where the functions served 0.2 s and 0.3 s: the
    # chain fa -> fb is 0.3 s longer, so each measured 0.5 s request counts as 0.8 s
    slow = {"fa": (0.3, 1), "fb": (0.5, 1)}
    d = plat.tick(e2e=(0.5,) * 5, canary=slow)
    assert d.reason == "trial 2/3: observing (1/2 ticks)"
    d = plat.tick(e2e=(0.5,) * 5, canary=slow)
    s = policy.samples[-1]
    assert s.config == P1 and not s.measurement.failed
    assert s.measurement.latency_s == pytest.approx(0.8)
    assert s.measurement.stage_latency_s == pytest.approx({"fa": 0.3, "fb": 0.5})
    # priced at P1's limits on the functions' own replicas (one each, 2 ticks), per call at
    # the reference rate (10/s x 2 s); the root's calls include its canary's
    assert s.measurement.cost_usd == pytest.approx(4 * decoupled_usd_per_s(1.0, 512) / 20)
    assert s.measurement.requests == 22
    # P1 met the QoS at less cost: kept, on the functions themselves, canaries ended
    assert policy.phase == "steady" and policy.best == P1
    assert applied(d) == limits_of(P1)
    assert all(fd.end_canary and fd.canary is None for fd in d.functions.values())


def test_a_canary_trial_waits_for_its_canaries_calls_and_rolls_back_their_oom(
    script: Script,
) -> None:
    p2 = cfg(1.0, 512, 1.0, 1024)
    script.plans = [[P1, p2]]
    policy = AquatopeConfigPolicy(
        budget=4, trial_ticks=2, min_invocations=20, trials="canary", min_canary_calls=3
    )
    plat = Plat(policy)
    for _ in range(3):
        d = plat.tick(e2e=(0.5,) * 5)
    assert {f: fd.canary for f, fd in d.functions.items()} == limits_of(P1)
    d = plat.tick(e2e=(0.5,) * 5, canary={"fa": (0.2, 1), "fb": (0.3, 1)})
    d = plat.tick(e2e=(0.5,) * 5, canary={"fa": (0.2, 1), "fb": (0.3, 1)})
    assert d.reason == "trial extended: too few invocations"  # 2 canary calls of 3
    # fb's canary is OOM-killed: rolled back in that tick, fb's floor raised above 512
    d = plat.tick(e2e=(0.5,) * 5, canary={"fa": (0.2, 1), "fb": (0.3, 1)}, canary_oom=["fb"])
    assert d.reason.startswith("trial rolled back (OOM kill of fb's canary)")
    assert applied(d) == limits_of(SAFE)
    assert all(fd.end_canary for fd in d.functions.values())
    assert policy.floor_mb("fb") > 512 and policy.floor_mb("fa") == 256
    assert policy.samples[-1].measurement.failed


def test_an_oom_of_the_incumbent_during_a_canary_trial_is_the_incumbents(script: Script) -> None:
    script.plans = [[P1, cfg(1.0, 512, 1.0, 1024)]]
    policy = AquatopeConfigPolicy(budget=4, trial_ticks=2, min_invocations=20, trials="canary")
    plat = Plat(policy)
    for _ in range(3):
        plat.tick(e2e=(0.5,) * 5)
    d = plat.tick(e2e=(0.5,) * 5, canary={"fa": (0.2, 1), "fb": (0.3, 1)}, oom=["fb"])
    # fb's own replicas ran SAFE (1024 MB): that floor goes up, no canary is blamed
    assert d.reason == "OOM kill of fb at the incumbent: memory raised"
    assert policy.floor_mb("fb") > 1024 and not any(s.measurement.failed for s in policy.samples)
    assert all(fd.end_canary for fd in d.functions.values())


def test_a_canary_limit_the_kernel_refused_is_rolled_back_like_an_oom(script: Script) -> None:
    """A canary kept from the last trial is re-limited live; a kernel that refuses the new
    memory (the canary already uses more) leaves the old limit, which the policy reads."""
    script.plans = [[P1, cfg(1.0, 512, 1.0, 1024)]]
    policy = AquatopeConfigPolicy(budget=4, trial_ticks=2, min_invocations=20, trials="canary")
    plat = Plat(policy)
    for _ in range(3):
        plat.tick(e2e=(0.5,) * 5)
    kept = {"fa": Limits(cpu_cores=1.0, memory_mb=512), "fb": Limits(cpu_cores=1.0, memory_mb=768)}
    d = plat.tick(e2e=(0.5,) * 5, canary={"fa": (0.2, 1), "fb": (0.3, 1)}, canary_limits=kept)
    assert d.reason.startswith(
        "trial rolled back (memory of fb's canary refused at 512 MB (kept at 768 MB))"
    )
    assert policy.floor_mb("fb") > 512 and policy.floor_mb("fa") == 256
