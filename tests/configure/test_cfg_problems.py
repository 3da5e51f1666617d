"""Synthetic sizing problems: their optimum is right (checked by brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scheduler.configure.space import Configuration, FunctionConfig
from scheduler.problems import (
    chain_problem,
    heterogeneous_problem,
    ml_pipeline_problem,
    social_compose_problem,
)


def test_dp_optimum_matches_brute_force_on_a_small_chain() -> None:
    problem = chain_problem(2)
    config, cost = problem.optimum()
    assert problem.true_latency_s(config) <= problem.qos_target_s
    space = problem.space()
    # brute force over a coarse sub-lattice that contains the DP answer's neighbourhood
    best = np.inf
    per_fn = []
    for fs in space.functions:
        cpus = fs.cpu_values[:15]
        mems = fs.memory_values[:10]
        per_fn.append([FunctionConfig(float(c), int(m)) for c in cpus for m in mems])
    for a, b in itertools.product(*per_fn):
        cand = Configuration.of({"fn-0": a, "fn-1": b})
        if problem.true_latency_s(cand) <= problem.qos_target_s:
            best = min(best, problem.true_cost_usd(cand))
    assert cost <= best * (1 + 1e-9)


@pytest.mark.parametrize(
    ("factory", "saving"),
    [(ml_pipeline_problem, 3), (social_compose_problem, 3), (heterogeneous_problem, 2.5)],
)
def test_shipped_problems_have_a_binding_optimum(factory, saving) -> None:  # type: ignore[no-untyped-def]
    problem = factory()
    space = problem.space()
    config, cost = problem.optimum()
    assert problem.true_latency_s(config) <= problem.qos_target_s
    assert problem.true_latency_s(config) > 0.9 * problem.qos_target_s  # the QoS binds
    assert cost < problem.true_cost_usd(space.all_max()) / saving
    assert problem.true_latency_s(space.all_min()) > problem.qos_target_s


def test_latency_falls_with_cpu_and_oom_below_need() -> None:
    problem = ml_pipeline_problem()
    model = problem.models["object-detection"]
    lat = model.latency_s(np.array([0.5, 1.0, 2.0, 4.0, 6.0]), 2048)
    assert np.all(np.diff(lat) <= 0) and lat[-1] == lat[-2]  # flat beyond its threads
    assert np.isinf(model.latency_s(1.0, model.memory_need_mb - 64))
    assert model.latency_s(1.0, model.memory_need_mb) > model.latency_s(1.0, 4096)
    rng = np.random.default_rng(0)
    m = problem.evaluate(problem.space().all_max(), rng)
    assert not m.failed and m.noise_s > 0


def test_heterogeneous_stages_want_opposite_shapes_and_power_tuning_cannot_follow() -> None:
    from scheduler.configure import make_configurator, qos_constraint, run_search
    from scheduler.configure.evaluate import ProblemEvaluator

    problem = heterogeneous_problem()
    config, optimum = problem.optimum()
    # memory-bound ingest: lots of memory, little CPU; CPU-bound shards: the opposite;
    # render: no more than the one core it can use
    assert config["ingest"].memory_mb >= 6144 and config["ingest"].cpu_cores <= 1.0
    for k in range(4):
        assert config[f"shard-{k}"].cpu_cores >= 1.5 and config[f"shard-{k}"].memory_mb <= 256
    assert config["render"].cpu_cores <= 1.0
    space = problem.space()
    constraints = [qos_constraint(problem.qos_target_s)]
    result = run_search(
        make_configurator("power-tuning", space, constraints),
        ProblemEvaluator(problem, seed=0).evaluate,
        space=space,
        constraints=constraints,
        budget=30,
    )
    assert result.best is not None
    # the oracle's headroom over power-tuning's pick: about 37 % (1.55x its cost)
    assert problem.true_cost_usd(result.best.config) > 1.4 * optimum
