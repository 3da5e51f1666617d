"""CherryPick (Alipourfard et al., NSDI'17) as a workflow sizer (baseline).

Plain Bayesian optimisation: one GP (Matérn 5/2, ARD over every dimension, the paper's
linear [0, 1] scaling) on the *penalised* cost, analytic expected improvement (BoTorch's
``LogExpectedImprovement``), three quasi-random initial points, and CherryPick's stopping
rule (expected improvement below 10% of the best cost after at least six trials). QoS is not
modelled: a trial that misses it is charged a penalty, so the method learns the constraint
only by violating it. Minimises ``cost_usd``; the acquisition is maximised over the lattice
with the same discrete local search as Aquatope's configurator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scheduler.configure.base import ConfigSample
from scheduler.configure.objectives import Constraint, is_feasible
from scheduler.configure.space import Configuration, SearchSpace
from scheduler.configure.surrogate import build_gp, quiet_numerics
from scheduler.configure.transform import UnitTransform

__all__ = ["CherryPickConfigurator"]


class CherryPickConfigurator:
    """EI on a penalised cost; no constraint model, no safety.

    Args:
        space: the lattice.
        constraints: what feasible means (only used to penalise measurements).
        seed: seeds the initial design, model fitting and search.
        n_initial: quasi-random initial points (CherryPick uses 3).
        penalty: an infeasible trial counts as ``cost × (1 + penalty)``... plus the largest
            cost seen, so it is never the incumbent.
        stop_rel_ei: stop when EI < this share of the best cost (CherryPick: 10%).
        min_trials: ... but not before this many trials (CherryPick: 6).
    """

    name = "cherrypick"

    def __init__(
        self,
        space: SearchSpace,
        constraints: Sequence[Constraint],
        *,
        seed: int = 0,
        n_initial: int = 3,
        penalty: float = 1.0,
        stop_rel_ei: float = 0.1,
        min_trials: int = 6,
        raw_samples: int = 512,
        num_restarts: int = 6,
    ) -> None:
        if n_initial < 1:
            raise ValueError("n_initial must be >= 1")
        self.space = space
        self.constraints = list(constraints)
        self.seed = seed
        self.n_initial = n_initial
        self.penalty = penalty
        self.stop_rel_ei = stop_rel_ei
        self.min_trials = min_trials
        self.raw_samples = raw_samples
        self.num_restarts = num_restarts
        self.transform = UnitTransform(space, warp="linear")
        self.stop_reason = ""
        self.source = "initial"
        self._initial = self._sobol(n_initial)
        self._steps = 0

    def _sobol(self, n: int) -> list[Configuration]:
        from scipy.stats import qmc

        m = max(0, math.ceil(math.log2(n)))  # Sobol' balance needs a power of two
        points = qmc.Sobol(self.space.n_dims, scramble=True, seed=self.seed).random_base2(m)[:n]
        choices = self.transform.choices()
        snapped = np.array(
            [
                [c[min(int(u * len(c)), len(c) - 1)] for u, c in zip(row, choices, strict=True)]
                for row in points
            ]
        )
        return self.transform.from_unit(snapped)

    def _penalised(self, samples: Sequence[ConfigSample]) -> np.ndarray:
        cost = np.array([s.cost_usd for s in samples])
        worst = cost.max()
        feasible = np.array([is_feasible(s, self.constraints) for s in samples])
        return np.where(feasible, cost, cost * (1 + self.penalty) + worst)

    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        """Initial design first, then the EI maximiser; None on CherryPick's stopping rule."""
        tried = {s.config for s in samples}
        for config in self._initial:
            if config not in tried:
                self.source = "initial"
                return config
        with quiet_numerics():
            return self._bo(samples)

    def _bo(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        import torch
        from botorch.acquisition.analytic import LogExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.optim.optimize import optimize_acqf_discrete_local_search
        from gpytorch.mlls import ExactMarginalLogLikelihood

        self._steps += 1
        step_seed = self.seed * 1000 + self._steps
        x = self.transform.to_unit([s.config for s in samples])
        y = self._penalised(samples)
        with torch.random.fork_rng():
            torch.manual_seed(step_seed)
            model = build_gp(x, -y)  # maximise -cost
            try:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            except Exception as exc:  # botorch raises ModelFittingError; keep prior mode
                if type(exc).__name__ != "ModelFittingError":
                    raise
            model.eval()
            acq = LogExpectedImprovement(model, best_f=float((-y).max()))
            cand, value = optimize_acqf_discrete_local_search(
                acq,
                discrete_choices=[
                    torch.as_tensor(c, dtype=torch.float64) for c in self.transform.choices()
                ],
                q=1,
                num_restarts=self.num_restarts,
                raw_samples=self.raw_samples,
                X_avoid=torch.as_tensor(x, dtype=torch.float64),
            )
        best = float(y.min())
        ei = math.exp(float(value.reshape(-1)[0]))
        if len(samples) >= self.min_trials and ei < self.stop_rel_ei * best:
            self.stop_reason = f"expected improvement below {self.stop_rel_ei:.0%} of the best cost"
            return None
        self.source = "bo"
        return self.transform.from_unit(cand.detach().numpy())[0]
