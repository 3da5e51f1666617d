"""The oracle that bounds QoS violations: it leaves cold the stages whose slack absorbs a start."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.policies.oracle import OraclePolicy, stages_left_cold
from scheduler.policy import Observation
from testbed.core.platform import QoS, Stage, Workflow
from testbed.experiment.results import find_runs, load_run
from testbed.experiment.run import run_experiment
from testbed.experiment.spec import load_spec
from testbed.report.metrics import compute_metrics
from tests.scheduler.sched_helpers import fobs

REPO = Path(__file__).resolve().parents[2]


def _chain(target_s: float) -> Workflow:
    return Workflow(
        name="w",
        qos=QoS(target_s=target_s),
        stages=(Stage("a", "a"), Stage("b", "b", after=("a",))),
    )


def test_the_stages_left_cold_fit_the_target_and_save_the_most_lead() -> None:
    service = {"a": 1.0, "b": 1.0}
    cold = {"a": 0.5, "b": 2.0}
    lead = {"a": 1.0, "b": 5.0}
    # 3 s: a cold gives 2.5 s; b cold 4 s; both 4.5 s
    assert stages_left_cold(_chain(3.0), service, cold, lead) == {"a"}
    # 4 s: b alone fits and saves more lead than a alone; both do not fit
    assert stages_left_cold(_chain(4.0), service, cold, lead) == {"b"}
    assert stages_left_cold(_chain(4.5), service, cold, lead) == {"a", "b"}
    assert stages_left_cold(_chain(1.9), service, cold, lead) == frozenset()


def test_only_the_longest_path_counts_for_a_branch() -> None:
    wf = Workflow(
        name="w",
        qos=QoS(target_s=5.0),
        stages=(
            Stage("in", "in"),
            Stage("slow", "slow", after=("in",)),
            Stage("fast", "fast", after=("in",)),
            Stage("out", "out", after=("slow", "fast")),
        ),
    )
    service = {"in": 1.0, "slow": 3.0, "fast": 0.1, "out": 0.5}
    cold = {"in": 1.0, "slow": 1.0, "fast": 2.5, "out": 1.0}
    lead = {f: 1.0 for f in service}
    # the path through slow takes 4.5 s: one 0.5 s of slack; the fast branch has 2.9 s more
    assert stages_left_cold(wf, service, cold, lead) == {"fast"}


def test_a_qos_aware_oracle_warms_only_the_stage_the_target_cannot_absorb() -> None:
    """A 2 s first stage that starts in 1 s, inside a 9 s target: it is left cold, and the
    3 s stage behind it is started ahead and held through the 1 s its upstream may add."""
    stages = (
        Stage("long", "long"),
        Stage("x", "x", after=("long",)),
        Stage("y", "y", after=("long",)),
        Stage("join", "join", after=("x", "y")),
    )
    wf = Workflow(name="w", qos=QoS(target_s=9.0), stages=stages)
    service = {"long": 2.0, "x": 3.0, "y": 0.5, "join": 0.1}
    cold = {"long": 1.0, "x": 4.0, "y": 0.5, "join": 0.2}
    policy = OraclePolicy(
        arrivals={"w": [100.0]},
        lead_s=5.0,
        hold_s=1.0,
        service_s_by_function=service,
        cold_s_by_function=cold,
        qos_aware=True,
    )

    def at(t: float) -> dict[str, int | None]:
        o = Observation(
            now_s=t,
            tick_s=1.0,
            functions={n: fobs(n, replicas_ready=0) for n in service},
            workflows={"w": wf},
        )
        return {n: d.replicas for n, d in policy.decide(o).functions.items()}

    assert at(94.0) == {"long": 0, "x": 0, "y": 0, "join": 0}
    assert policy.left_cold == {"w": {"long", "y", "join"}}  # x cold would give 9.1 s
    assert at(95.0) == {"long": 0, "x": 0, "y": 0, "join": 0}
    assert at(96.0) == {"long": 0, "x": 1, "y": 0, "join": 0}  # 6 s before its call at 102
    assert at(105.5) == {"long": 0, "x": 1, "y": 0, "join": 0}  # 3 s service + 1 s delay
    assert at(106.5) == {"long": 0, "x": 0, "y": 0, "join": 0}
    blind = OraclePolicy(
        arrivals={"w": [100.0]}, lead_s=5.0, hold_s=1.0, service_s_by_function=service
    )
    o = Observation(
        now_s=99.0, tick_s=1.0, functions={n: fobs(n) for n in service}, workflows={"w": wf}
    )
    assert {n: d.replicas for n, d in blind.decide(o).functions.items()} == {
        "long": 1, "x": 1, "y": 1, "join": 1,
    }  # fmt: skip
    assert policy.planned_cost_s({"w": wf}, 1.0) == pytest.approx(6.0)  # x's lead + tick
    assert blind.planned_cost_s({"w": wf}, 1.0) == pytest.approx(24.0)


def test_the_runner_gives_the_oracle_the_profiles_p95_cold_starts() -> None:
    from testbed.experiment.policies import create_run_policy, profile_estimates
    from testbed.sim.profile import load_profile

    profile = load_profile(check_conditions=False)
    estimates = profile_estimates(profile)
    cold = estimates["cold_s"]
    assert cold["object-detection"] == profile.functions[
        "object-detection"
    ].cold_start_s.quantile_s(0.95)
    assert cold["object-detection"] > profile.functions["object-detection"].cold_start_s.mean_s
    oracle = create_run_policy("oracle", {"qos_aware": True}, arrivals_s={}, **estimates)
    assert isinstance(oracle, OraclePolicy) and oracle.cold_s == cold and oracle.qos_aware
    mine = create_run_policy("oracle", {"cold_s_by_function": {"a": 1.0}}, **estimates)
    assert isinstance(mine, OraclePolicy) and mine.cold_s == {"a": 1.0}  # params win


def test_on_the_simulator_it_meets_the_qos_with_less_idle_than_the_cold_start_bound(
    tmp_path: Path,
) -> None:
    """video-analytics, sparse requests: the 2 s first stage and the image stage may start
    cold inside the 6 s target, the torch stages may not."""
    config = tmp_path / "oracle-qos.yaml"
    config.write_text(
        f"name: oq\nbackend: sim\nstack: {REPO / 'stack.yml'}\n"
        "workflows: [video-analytics]\n"
        "trace: {kind: poisson, minutes: 40, options: {rate_per_min: 0.5}}\n"
        "duration_s: 2400\nwarmup_s: 0\nseeds: [3]\nbackend_options: {host_cores: 8}\n"
        "policies:\n"
        "  - name: oracle\n    label: cold-starts\n    params: {lead_s: 30}\n"
        "  - name: oracle\n    label: qos\n    params: {lead_s: 30, qos_aware: true}\n"
    )
    result = run_experiment(load_spec(config), tmp_path / "out")
    runs = {r.label: r for r in map(load_run, find_runs([result.out_dir]))}
    stats = {}
    for label, run in runs.items():
        req = run.requests
        assert len(req) >= 10
        late = float((req["latency_s"] > req["qos_target_s"]).mean())
        stages = run.stages
        cold = stages[stages["cold_start"]].groupby("function").size().to_dict()
        stats[label] = (late, cold, compute_metrics(run).cost.idle_replica_s)
    assert stats["cold-starts"][0] == 0.0 and stats["qos"][0] == 0.0
    assert stats["cold-starts"][1] == {}  # every use served warm
    assert set(stats["qos"][1]) == {"keyframe-extractor", "image-processing"}
    # two of the five stages' leads saved: about 2/5 less idle (the torch stages hold longer)
    assert stats["qos"][2] < 0.8 * stats["cold-starts"][2]
