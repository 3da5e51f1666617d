"""``sized``: a replica policy's targets with the online configurator's limits, by any method."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from scheduler.policies.sized import SizedPolicy
from scheduler.policy import Decision, Observation
from scheduler.registry import available_policies, create_policy
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows
from testbed.experiment.simulate import run_simulation

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_it_is_registered_with_the_replica_policy_and_the_configurators_parameters() -> None:
    params = available_policies()["sized"].parameters
    assert params["replicas"][1] == "hybrid-histogram"
    assert {"config_method", "config_budget", "config_workflow"} <= set(params)
    policy = create_policy("sized", {"replicas": "keep-alive", "config_method": "cherrypick"})
    assert isinstance(policy, SizedPolicy)
    assert policy.replicas_policy == "keep-alive" and policy.config.method == "cherrypick"  # type: ignore[attr-defined]


@pytest.mark.parametrize("replicas", ["oracle", "aquatope", "sized", "no-such-policy"])
def test_a_policy_that_sets_limits_or_reads_the_future_is_not_a_replica_half(
    replicas: str,
) -> None:
    with pytest.raises(ValueError, match=f"replicas must be one of .*got '{replicas}'"):
        SizedPolicy(replicas=replicas)


def test_an_option_of_neither_half_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        SizedPolicy(budget=5)


def test_on_the_simulator_replicas_follow_the_replica_policy_and_limits_the_trials() -> None:
    # power-tuning sizing the ml-pipeline while hybrid-histogram keeps its replicas: every
    # replica target is hybrid-histogram's own, and the configurator's trials change limits
    workflows = load_workflows()
    ml = workflows.get("ml-pipeline")
    stack = load_stack(REPO_ROOT / "stack.yml")
    specs = [stack[f] for f in ml.functions]
    policy = SizedPolicy(
        replicas="hybrid-histogram",
        config_workflow=ml.name,
        config_method="power-tuning",
        config_budget=6,
        config_trial_ticks=20,
    )
    own: list[Decision] = []
    merged: list[Decision] = []
    replicas_half, decide = policy.replicas, policy.decide

    def record_half(observation: Observation) -> Decision:
        own.append(type(replicas_half).decide(replicas_half, observation))
        return own[-1]

    def record(observation: Observation) -> Decision:
        merged.append(decide(observation))
        return merged[-1]

    replicas_half.decide = record_half  # type: ignore[method-assign]
    policy.decide = record  # type: ignore[method-assign]
    arrivals = np.sort(np.random.default_rng(0).uniform(0, 240, 480))  # 2 requests a second
    results = run_simulation(
        {"host_cores": math.inf},
        workflows,
        {ml.name: arrivals},
        policy,
        functions=specs,
        until_s=240.0,
    )
    assert len(own) == len(merged) > 200
    for mine, theirs in zip(merged, own, strict=True):
        assert {n: d.replicas for n, d in mine.functions.items()} == {
            n: d.replicas for n, d in theirs.functions.items()
        }
    declared = {s.name: (s.limits.cpu_cores, s.limits.memory_mb) for s in specs}
    seen = results.timeline.groupby("function")[["cpu_cores", "memory_mb"]]
    changed = [
        name
        for name, part in seen
        if any((c, m) != declared[name] for c, m in part.drop_duplicates().itertuples(index=False))
    ]
    assert changed, "no trial changed any function's limits"
