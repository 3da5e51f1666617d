"""The Bayesian configurator's models: honest uncertainty, repeatable proposals, cost structure."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.configure import Measurement, make_configurator, qos_constraint, run_search
from scheduler.configure.evaluate import ProblemEvaluator
from scheduler.configure.surrogate import fit_batched_outcomes
from scheduler.problems import chain_problem, heterogeneous_problem


def test_a_stage_model_stays_uncertain_far_from_its_data() -> None:
    """Twelve dimensions, each output reading two: the data lie on a line in one corner, so at
    the opposite corner a stage's latency must stay uncertain (a free outputscale collapsed
    to zero once the linear mean fitted the trend, and a 12-D lengthscale prior made a 2-D
    function look flat: P(feasible) was then ~1 for configurations never near any data)."""
    rng = np.random.default_rng(0)
    n, d = 12, 12
    t = rng.uniform(0.6, 1.0, n)
    x = np.clip(t[:, None] + rng.normal(0, 0.02, (n, d)), 0, 1)
    y = np.column_stack([-1.5 * x[:, 2 * j] + rng.normal(0, 0.04, n) for j in range(d // 2)])
    masks = np.zeros((d // 2, d), dtype=bool)
    for j in range(d // 2):
        masks[j, [2 * j, 2 * j + 1]] = True
    model = fit_batched_outcomes(x, y, masks, seed=0)
    import torch

    with torch.no_grad():
        near = model.posterior(torch.as_tensor(x[:1])).variance.sqrt().numpy().ravel()
        far = model.posterior(torch.zeros(1, d, dtype=torch.float64)).variance.sqrt()
    far = far.numpy().ravel()
    spread = y.std(axis=0)
    assert (far > 0.3 * spread).all(), (far, spread)
    assert (far > 3 * near).all(), (far, near)


def test_the_same_seed_proposes_the_same_configurations() -> None:
    """BoTorch draws from torch's global generator (baseline pruning), which torch seeds at
    random per process: each step's acquisition value must not depend on it."""
    problem = heterogeneous_problem()
    space = problem.space()
    constraints = [qos_constraint(problem.qos_target_s)]

    def trials(global_seed: int) -> list[tuple[str, float]]:
        import torch

        torch.manual_seed(global_seed)
        configurator = make_configurator(
            "aquatope", space, constraints, seed=1, workflow=problem.workflow()
        )
        steps: list[tuple[str, float]] = []
        propose = configurator.propose

        def recorded(samples):  # type: ignore[no-untyped-def]
            config = propose(samples)
            step = configurator.last_step  # type: ignore[attr-defined]
            steps.append((str(config), step.log_ei if step else 0.0))
            return config

        configurator.propose = recorded  # type: ignore[method-assign]
        run_search(
            configurator,
            ProblemEvaluator(problem, seed=1).evaluate,
            space=space,
            constraints=constraints,
            budget=8,
        )
        return steps

    first = trials(0)
    assert sum(1 for _, ei in first if ei) >= 4  # BO steps, not only the probe and ladder
    assert trials(12345) == first


def test_replica_seconds_must_be_finite_and_non_negative() -> None:
    with pytest.raises(ValueError, match="stage_replica_s"):
        Measurement(cost_usd=1e-6, latency_s=0.1, stage_replica_s={"a": -1.0})
    with pytest.raises(ValueError, match="stage_replica_s"):
        Measurement(cost_usd=1e-6, latency_s=0.1, stage_replica_s={"a": float("nan")})


def test_synthetic_cost_is_the_price_times_the_replica_seconds() -> None:
    from testbed.core.prices import decoupled_usd_per_s

    problem = chain_problem(3)
    space = problem.space()
    rng = np.random.default_rng(0)
    for config in space.sample(5, rng):
        m = problem.evaluate(config, rng)
        priced = sum(
            decoupled_usd_per_s(c.cpu_cores, c.memory_mb) * m.stage_replica_s[f]
            for f, c in config.items()
        )
        assert priced == pytest.approx(m.cost_usd, rel=1e-9)
