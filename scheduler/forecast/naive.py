"""Simple reference forecasters: last value, EWMA and seasonal naive (numpy only, no torch).

All take histories of shape ``n_functions x n_steps`` (arrival counts per step, see
:mod:`scheduler.forecast.base`). Their spread is the root-mean-square of their own recent
one-step-ahead errors (at least the Poisson spread ``sqrt(mean)``), widened with the horizon
as a random walk would (``sqrt(k)``); quantiles are normal quantiles clipped at zero. They are
the bar the Bayesian models must beat, and the fallback while history is short.
"""

from __future__ import annotations

import numpy as np

from scheduler.forecast.base import DEFAULT_LEVELS, Forecast, as_history, normal_quantiles

__all__ = ["EwmaForecaster", "LastValueForecaster", "SeasonalNaiveForecaster"]


def _spread(errors: np.ndarray, mean: np.ndarray, window: int) -> np.ndarray:
    """Per-function RMS of the last ``window`` errors, floored by the Poisson spread."""
    if errors.shape[1] == 0:
        rms = np.zeros(errors.shape[0])
    else:
        tail = errors[:, -window:]
        rms = np.sqrt(np.mean(tail * tail, axis=1))
    return np.asarray(np.sqrt(np.maximum(rms * rms, np.maximum(mean, 0.0)) + 1e-12), np.float64)


class _OneStepForecaster:
    """Shared plumbing: one-step predictions over the history give errors and the spread."""

    def __init__(
        self, *, step_s: float = 60.0, window: int = 120, levels: tuple[float, ...] = DEFAULT_LEVELS
    ) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        self.step_s = float(step_s)
        self.window = int(window)
        self.levels = tuple(levels)
        self._level: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._history: np.ndarray | None = None

    def _one_step(self, history: np.ndarray) -> np.ndarray:
        """Prediction of step t made after step t-1, for every t (first column: history[0])."""
        raise NotImplementedError

    def fit(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Compute the level and spread from ``history`` (``n_functions x n_steps``)."""
        del end_s
        hist = as_history(history)
        tail = hist[:, -(self.window + 1) :]
        preds = self._one_step(tail)
        errors = tail[:, 1:] - preds[:, 1:]
        self._history = hist
        self._level = self._next_level(hist)
        self._scale = _spread(errors, self._level, self.window)

    update = fit

    def _next_level(self, history: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _path(self, horizon: int) -> np.ndarray:
        assert self._level is not None
        return np.repeat(self._level[:, None], horizon, axis=1)

    def predict(self, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps (``n_functions x horizon`` mean, std and quantiles)."""
        if self._level is None or self._scale is None:
            raise RuntimeError("call fit() before predict()")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        mean = np.maximum(self._path(horizon), 0.0)
        widen = np.sqrt(np.arange(1, horizon + 1, dtype=np.float64))[None, :]
        std = self._scale[:, None] * widen
        return Forecast(mean=mean, std=std, quantiles=normal_quantiles(mean, std, self.levels))


class LastValueForecaster(_OneStepForecaster):
    """Every future step equals the last observed count."""

    def _one_step(self, history: np.ndarray) -> np.ndarray:
        out = np.empty_like(history)
        out[:, 0] = history[:, 0]
        out[:, 1:] = history[:, :-1]
        return out

    def _next_level(self, history: np.ndarray) -> np.ndarray:
        return history[:, -1].copy()


class EwmaForecaster(_OneStepForecaster):
    """Exponentially weighted moving average: ``level <- a*count + (1-a)*level``.

    Args:
        alpha: smoothing weight of the newest step, in (0, 1].
    """

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        step_s: float = 60.0,
        window: int = 120,
        levels: tuple[float, ...] = DEFAULT_LEVELS,
    ) -> None:
        super().__init__(step_s=step_s, window=window, levels=levels)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)

    def _smooth(self, history: np.ndarray) -> np.ndarray:
        """Level after each step (``n_functions x n_steps``)."""
        out = np.empty_like(history)
        level = history[:, 0].copy()
        for t in range(history.shape[1]):
            level = self.alpha * history[:, t] + (1.0 - self.alpha) * level
            out[:, t] = level
        return out

    def _one_step(self, history: np.ndarray) -> np.ndarray:
        levels = self._smooth(history)
        out = np.empty_like(history)
        out[:, 0] = history[:, 0]
        out[:, 1:] = levels[:, :-1]
        return out

    def _next_level(self, history: np.ndarray) -> np.ndarray:
        return self._smooth(history[:, -max(self.window * 4, 1) :])[:, -1]


class SeasonalNaiveForecaster(_OneStepForecaster):
    """Step ``t`` repeats step ``t - period``; falls back to last value until a period is seen.

    Args:
        period_steps: season length in steps (1440 = one day of per-minute counts).
    """

    def __init__(
        self,
        *,
        period_steps: int = 1440,
        step_s: float = 60.0,
        window: int = 120,
        levels: tuple[float, ...] = DEFAULT_LEVELS,
    ) -> None:
        super().__init__(step_s=step_s, window=window, levels=levels)
        if period_steps < 1:
            raise ValueError(f"period_steps must be >= 1, got {period_steps}")
        self.period_steps = int(period_steps)

    def fit(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Keep the last season and the spread of seasonal one-step errors."""
        del end_s
        hist = as_history(history)
        p = self.period_steps
        self._history = hist[:, -(p + self.window + 1) :]
        errors = hist[:, p:] - hist[:, :-p] if hist.shape[1] > p else hist[:, 1:] - hist[:, :-1]
        self._level = hist[:, -1].copy()
        self._scale = _spread(errors, np.mean(hist[:, -p:], axis=1), self.window)

    update = fit

    def _path(self, horizon: int) -> np.ndarray:
        assert self._history is not None and self._level is not None
        hist, p = self._history, self.period_steps
        n = hist.shape[1]
        if n < p:
            return np.repeat(self._level[:, None], horizon, axis=1)
        idx = [n - p + (k % p) for k in range(horizon)]
        return hist[:, idx]

    def predict(self, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps; the spread does not widen within one season."""
        if self._scale is None:
            raise RuntimeError("call fit() before predict()")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        mean = np.maximum(self._path(horizon), 0.0)
        seasons = 1 + np.arange(horizon) // self.period_steps
        std = self._scale[:, None] * np.sqrt(seasons)[None, :]
        return Forecast(mean=mean, std=std, quantiles=normal_quantiles(mean, std, self.levels))
