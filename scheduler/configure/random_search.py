"""Random search over the lattice (baseline): uniform lattice points, keep the best feasible.

Minimises ``cost_usd`` subject to the constraints, checked on measurements only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scheduler.configure.base import ConfigSample
from scheduler.configure.objectives import Constraint
from scheduler.configure.space import Configuration, SearchSpace

__all__ = ["RandomConfigurator"]


class RandomConfigurator:
    """Uniformly random lattice configurations (never the same one twice).

    Args:
        space: the lattice.
        constraints: feasibility callables (kept for a uniform interface).
        seed: seed of the generator.
    """

    name = "random"
    source = "random"

    def __init__(self, space: SearchSpace, constraints: Sequence[Constraint], *, seed: int = 0):
        self.space = space
        self.constraints = list(constraints)
        self.stop_reason = ""
        self._rng = np.random.default_rng(seed)

    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        """A fresh random lattice point."""
        tried = {s.config for s in samples}
        for _ in range(100):
            config = self.space.sample(1, self._rng)[0]
            if config not in tried:
                return config
        self.stop_reason = "no untried configuration found"
        return None
