"""The one mapping between configurations and the [0, 1] box the models and optimisers see.

Each dimension is warped (log by default: latency falls like ``1/cpu``, so equal steps in log
CPU change latency by similar factors; linear reproduces the paper's scaling) and then scaled
so the smallest lattice value is 0 and the largest 1. Lattice points map to fixed unit
coordinates, listed by :meth:`UnitTransform.choices`: optimisers search over those discrete
coordinates directly, so no proposal is ever rounded after the fact. :meth:`from_unit` snaps
to the nearest lattice coordinate only to absorb float error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from scheduler.configure.space import Configuration, SearchSpace

__all__ = ["UnitTransform"]

Warp = Literal["log", "linear"]


class UnitTransform:
    """Maps configurations of ``space`` to and from points of ``[0, 1]^d``.

    Args:
        space: the search space.
        warp: ``"log"`` (default) or ``"linear"`` (the paper's min-max scaling).
    """

    def __init__(self, space: SearchSpace, *, warp: Warp = "log") -> None:
        if warp not in ("log", "linear"):
            raise ValueError(f"warp must be 'log' or 'linear', got {warp!r}")
        self.space = space
        self.warp = warp
        self._choices: list[np.ndarray] = []
        for d in range(space.n_dims):
            self._choices.append(self._scale(d, space.values(d)))
        lattice = [self._warped(space.values(d)) for d in range(space.n_dims)]
        self._lo = np.array([w[-1] if w[-1] - w[0] < 1e-12 else w[0] for w in lattice])
        self._span = np.array([0.0 if w[-1] - w[0] < 1e-12 else w[-1] - w[0] for w in lattice])

    def _warped(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.warp == "log" else np.asarray(values, dtype=float)

    def _scale(self, dim: int, values: np.ndarray) -> np.ndarray:
        lattice = self._warped(self.space.values(dim))
        lo, hi = lattice[0], lattice[-1]
        if hi - lo < 1e-12:  # a single allowed value: pin it at 1
            return np.ones_like(np.asarray(values, dtype=float))
        scaled = (self._warped(np.asarray(values, dtype=float)) - lo) / (hi - lo)
        return np.asarray(scaled, dtype=float)

    def _warped_of_unit(self, X: Any) -> Any:
        """Unit points (torch) → warped values: the scaling undone, the warp not."""
        import torch

        lo = torch.as_tensor(self._lo, dtype=X.dtype)
        span = torch.as_tensor(self._span, dtype=X.dtype)
        return lo + X * span

    def values_of_unit(self, X: Any) -> Any:
        """Unit points (a torch tensor ``... x d``) → raw values (cores, MiB), differentiably.

        The inverse of the warp and scaling, for lattice and off-lattice points alike.
        """
        warped = self._warped_of_unit(X)
        return warped.exp() if self.warp == "log" else warped

    def log_values_of_unit(self, X: Any) -> Any:
        """Unit points (torch, ``... x d``) → the logs of their raw values: under the log
        warp an affine map (no exp and log round trip), differentiably."""
        warped = self._warped_of_unit(X)
        return warped if self.warp == "log" else warped.log()

    def choices(self) -> list[np.ndarray]:
        """Unit coordinates of the lattice, per dimension (ascending, each in [0, 1])."""
        return [c.copy() for c in self._choices]

    def to_unit(self, configs: Sequence[Configuration]) -> np.ndarray:
        """Configurations → array of shape ``n x d`` in [0, 1]."""
        out = np.empty((len(configs), self.space.n_dims))
        for row, config in enumerate(configs):
            idx = self.space.to_indices(config)
            for d, i in enumerate(idx):
                out[row, d] = self._choices[d][i]
        return out

    def indices_of_unit(self, x: np.ndarray) -> list[int]:
        """Lattice indices nearest to unit point ``x`` (shape ``d``)."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.shape[0] != self.space.n_dims:
            raise ValueError(f"expected {self.space.n_dims} coordinates, got {x.shape[0]}")
        return [int(np.argmin(np.abs(self._choices[d] - x[d]))) for d in range(len(x))]

    def from_unit(self, X: np.ndarray) -> list[Configuration]:
        """Array ``n x d`` (or ``d``) of lattice coordinates → configurations."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return [self.space.from_indices(self.indices_of_unit(row)) for row in X]
