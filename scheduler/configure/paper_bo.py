"""The Aquatope paper's own resource-manager BO, as a baseline (``paper-bo``).

As the paper describes it: two GPs (cost and latency, Matérn 5/2 with ARD), ``n_initial``
uniformly random initial configurations (10), then rounds of batch (q = 3) constrained noisy
expected improvement over the *continuous* [0, 1] box (linear scaling), each point rounded to
the nearest lattice configuration afterwards; before each fit, samples whose leave-one-out
residual under either GP exceeds ``outlier_z`` standard deviations are dropped as noisy
outliers. No safety gate, no trust region, no per-stage model: it learns the QoS boundary by
crossing it. The acquisition is BoTorch's log form of qNEI (same maximiser, without the
vanishing gradients of the plain form). With a budget of 30 evaluations it runs 10 initial
points and about 7 rounds (the paper ran 20 rounds).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from scheduler._threads import single_thread
from scheduler.configure.base import ConfigSample
from scheduler.configure.objectives import Constraint, latency_target
from scheduler.configure.space import Configuration, SearchSpace
from scheduler.configure.surrogate import build_gp, quiet_numerics
from scheduler.configure.transform import UnitTransform

__all__ = ["PaperBOConfigurator", "loo_outliers"]

LATENCY_CAP_FACTOR = 3.0


def loo_outliers(model: Any, z: float) -> np.ndarray:
    """Indices of training points whose leave-one-out residual exceeds ``z`` LOO std devs.

    Closed form for an exact GP: with ``A = (K + σ²I)⁻¹``, the LOO residual of point ``i``
    is ``(A y)_i / A_ii`` and its variance ``1 / A_ii`` (in the model's standardised space).
    """
    import torch

    with torch.no_grad():
        x = model.train_inputs[0]
        y = model.train_targets - model.mean_module(x)
        k = model.covar_module(x).to_dense()
        k = k + model.likelihood.noise.reshape(-1)[0] * torch.eye(len(y), dtype=k.dtype)
        a = torch.linalg.inv(k)
        alpha = a @ y
        resid = alpha / a.diagonal()
        std = a.diagonal().rsqrt()
        return np.flatnonzero((resid.abs() / std).numpy() > z)


class PaperBOConfigurator:
    """Batch qNEI over the continuous box with two GPs and LOO outlier removal.

    Args:
        space: the lattice (proposals are rounded onto it).
        constraints: must include a ``LatencyConstraint``.
        seed: seeds the initial design, fits and the acquisition.
        n_initial: random initial configurations (the paper: 10).
        q: batch size of each BO round (the paper: 3).
        rounds: BO rounds before stopping (the paper: 20).
        mc_samples: Monte-Carlo samples of qNEI.
        outlier_z: leave-one-out outlier threshold (standard deviations).

    Raises:
        ValueError: no latency constraint.
    """

    name = "paper-bo"

    def __init__(
        self,
        space: SearchSpace,
        constraints: Sequence[Constraint],
        *,
        seed: int = 0,
        n_initial: int = 10,
        q: int = 3,
        rounds: int = 20,
        mc_samples: int = 128,
        outlier_z: float = 3.0,
    ) -> None:
        target = latency_target(constraints)
        if target is None:
            raise ValueError("PaperBOConfigurator needs a LatencyConstraint among constraints")
        if n_initial < 1 or q < 1 or rounds < 1:
            raise ValueError("n_initial, q and rounds must be >= 1")
        self.space = space
        self.constraints = list(constraints)
        self.target_s = target
        self.seed = seed
        self.q = q
        self.rounds = rounds
        self.mc_samples = mc_samples
        self.outlier_z = outlier_z
        self.transform = UnitTransform(space, warp="linear")
        self.stop_reason = ""
        self.source = "initial"
        self.outliers_dropped = 0
        rng = np.random.default_rng(seed)
        self._initial = space.sample(n_initial, rng)
        self._pending: list[Configuration] = []
        self._round = 0

    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        """Initial design, then the members of the current q-batch one at a time."""
        tried = {s.config for s in samples}
        for config in self._initial:
            if config not in tried:
                self.source = "initial"
                return config
        self._pending = [c for c in self._pending if c not in tried]
        if not self._pending:
            if self._round >= self.rounds:
                self.stop_reason = f"{self.rounds} rounds done"
                return None
            with single_thread(), quiet_numerics():
                self._pending = self._batch(samples, tried)
            self._round += 1
        if not self._pending:
            self.stop_reason = "no untried configuration proposed"
            return None
        self.source = "bo"
        return self._pending.pop(0)

    def _fit(self, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
        import torch
        from botorch.exceptions.errors import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build_gp(x, y)
            with contextlib.suppress(ModelFittingError):  # else the prior-mode model
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        model.eval()
        return model

    def _batch(self, samples: Sequence[ConfigSample], tried: set[Configuration]) -> list[Any]:
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.acquisition.objective import GenericMCObjective
        from botorch.models.model_list_gp_regression import ModelListGP
        from botorch.optim.optimize import optimize_acqf
        from botorch.sampling.normal import SobolQMCNormalSampler

        step_seed = self.seed * 1000 + self._round
        x = self.transform.to_unit([s.config for s in samples])
        cost = np.array([s.cost_usd for s in samples])
        cap = math.log(LATENCY_CAP_FACTOR * self.target_s)
        lat = np.array(
            [cap if s.measurement.failed else min(math.log(s.latency_s), cap) for s in samples]
        )
        cost_gp, lat_gp = self._fit(x, cost, step_seed), self._fit(x, lat, step_seed + 1)
        drop = np.union1d(
            loo_outliers(cost_gp, self.outlier_z), loo_outliers(lat_gp, self.outlier_z)
        )
        if 0 < len(drop) < len(samples) - 3:
            keep = np.setdiff1d(np.arange(len(samples)), drop)
            self.outliers_dropped += len(drop)
            x, cost, lat = x[keep], cost[keep], lat[keep]
            cost_gp, lat_gp = self._fit(x, cost, step_seed), self._fit(x, lat, step_seed + 1)
        model = ModelListGP(cost_gp, lat_gp)
        log_target = math.log(self.target_s)
        acq = qLogNoisyExpectedImprovement(
            model=model,
            X_baseline=torch.as_tensor(x, dtype=torch.float64),
            sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=step_seed),
            objective=GenericMCObjective(_minus_cost),
            constraints=[lambda Z: Z[..., 1] - log_target],
            prune_baseline=True,
        )
        bounds = torch.stack([torch.zeros(self.space.n_dims), torch.ones(self.space.n_dims)]).to(
            torch.float64
        )
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(step_seed)
            # L-BFGS-B stopping abnormally on a restart is handled by BoTorch itself (it tries
            # new initial conditions, then keeps the best point found) and says so
            warnings.filterwarnings(
                "ignore",
                message="Optimization failed (in `gen_candidates_scipy`|on the second try)",
                category=RuntimeWarning,
            )
            cand, _ = optimize_acqf(acq, bounds=bounds, q=self.q, num_restarts=4, raw_samples=64)
        out: list[Configuration] = []
        for config in self.transform.from_unit(cand.detach().numpy()):
            if config not in tried and config not in out:
                out.append(config)
        return out


def _minus_cost(Z: Any, X: Any = None) -> Any:
    """The objective BoTorch maximises: minus the cost outcome (``... x m``, cost first)."""
    return -Z[..., 0]
