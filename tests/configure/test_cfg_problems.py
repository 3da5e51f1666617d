"""Synthetic sizing problems: their optimum is right (checked by brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scheduler.configure.space import Configuration, FunctionConfig
from scheduler.problems import chain_problem, ml_pipeline_problem, social_compose_problem


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


@pytest.mark.parametrize("factory", [ml_pipeline_problem, social_compose_problem])
def test_shipped_problems_have_a_binding_optimum(factory) -> None:  # type: ignore[no-untyped-def]
    problem = factory()
    space = problem.space()
    config, cost = problem.optimum()
    assert problem.true_latency_s(config) <= problem.qos_target_s
    assert problem.true_latency_s(config) > 0.9 * problem.qos_target_s  # the QoS binds
    assert cost < problem.true_cost_usd(space.all_max()) / 3
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
