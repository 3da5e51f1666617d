"""The ``Forecaster`` seam and the ``Forecast`` it returns.

Every forecaster here works on the same input layout:

* ``history`` is a 2-D array of shape ``n_functions x n_steps``: row ``i`` holds the number of
  arrivals (invocations) of function ``i`` in each consecutive *step*, oldest first. Counts are
  non-negative floats (integers in practice).
* A *step* is a fixed length of time, ``step_s`` seconds, chosen by whoever builds the
  history (60 s reproduces the paper's per-minute counts; the ``aquatope-prewarm`` policy
  defaults to 10 s so a few minutes of history already hold enough points). ``end_s`` (seconds,
  optional) is the time at the end of the last step; forecasters with calendar features
  (hour, weekday) read it, the others ignore it.
* ``predict(horizon)`` forecasts the counts in the ``horizon`` steps that follow the last
  step of the history: column ``k`` of the result is step ``k + 1`` after the history.
* ``Forecast.quantiles[q]`` (shape ``n_functions x horizon``) is the model's ``q``-quantile of
  the count in that step: the count should stay at or below it with probability ``q``. Raw
  model quantiles are beliefs, not guarantees; :mod:`scheduler.forecast.calibrate` turns them
  into intervals whose empirical coverage matches ``q`` on recent data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DEFAULT_LEVELS",
    "Forecast",
    "Forecaster",
    "as_history",
    "normal_quantiles",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Forecast:
    """A predictive distribution of future per-step counts.

    Args:
        mean: expected count per step, shape ``n_functions x horizon``.
        std: predictive standard deviation per step, same shape (the spread the calibrator
            normalises residuals with).
        quantiles: level ``q`` in (0, 1) -> ``q``-quantile of the count, same shape.
    """

    mean: np.ndarray
    std: np.ndarray
    quantiles: Mapping[float, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mean.ndim != 2:
            raise ValueError(f"mean must be n_functions x horizon, got shape {self.mean.shape}")
        if self.std.shape != self.mean.shape:
            raise ValueError(f"std shape {self.std.shape} != mean shape {self.mean.shape}")
        for q, values in self.quantiles.items():
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantile level must be in (0, 1), got {q}")
            if values.shape != self.mean.shape:
                raise ValueError(f"quantile {q} shape {values.shape} != {self.mean.shape}")

    @property
    def horizon(self) -> int:
        """Number of forecast steps."""
        return int(self.mean.shape[1])

    def quantile(self, q: float) -> np.ndarray:
        """The ``q``-quantile (``n_functions x horizon``): stored if present, else normal approx.

        Args:
            q: level in (0, 1).

        Returns:
            Non-negative counts.
        """
        if q in self.quantiles:
            return self.quantiles[q]
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {q}")
        return np.maximum(self.mean + _NORMAL.inv_cdf(q) * self.std, 0.0)


@runtime_checkable
class Forecaster(Protocol):
    """Forecasts per-step arrival counts of several functions with uncertainty.

    ``fit`` learns parameters from a history (``n_functions x n_steps`` counts per step, see
    the module docstring); ``update`` conditions on a newer history without relearning
    parameters (cheap, called every step; forecasters without learned parameters treat both
    the same); ``predict`` returns the next ``horizon`` steps.
    """

    step_s: float

    def fit(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Learn from ``history`` (``n_functions x n_steps`` counts)."""
        ...

    def update(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Condition on ``history`` keeping learned parameters (falls back to ``fit``)."""
        ...

    def predict(self, horizon: int) -> Forecast:
        """Forecast the ``horizon`` steps after the last fitted/updated step."""
        ...


def as_history(history: np.ndarray | list[list[float]] | list[float]) -> np.ndarray:
    """Validate and normalise a history to a float64 ``n_functions x n_steps`` array.

    A 1-D input is read as one function.

    Raises:
        ValueError: wrong rank, no steps, or negative / non-finite counts.
    """
    arr = np.asarray(history, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"history must be n_functions x n_steps, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError("history has no steps")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("history counts must be finite and non-negative")
    return arr


def normal_quantiles(
    mean: np.ndarray, std: np.ndarray, levels: tuple[float, ...] = DEFAULT_LEVELS
) -> dict[float, np.ndarray]:
    """Quantiles of a normal clipped at zero, for each level.

    Args:
        mean: ``n_functions x horizon`` means.
        std: same-shape standard deviations.
        levels: quantile levels in (0, 1).

    Returns:
        level -> ``n_functions x horizon`` array.
    """
    return {
        q: np.maximum(mean + _NORMAL.inv_cdf(q) * std, 0.0)
        for q in levels
        if not math.isclose(q, 0.0) and q < 1.0
    }
