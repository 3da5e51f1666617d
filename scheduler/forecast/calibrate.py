"""Online calibration of forecast quantiles: conformal scores plus adaptive level tracking.

A forecaster's raw ``q``-quantile is a belief: the LSTM's MC-dropout bands and a GP fitted on
a few minutes of data are both routinely over- or under-confident. :class:`ConformalCalibrator`
fixes that per function, online, with no assumption on the forecaster:

1. **Split-conformal scores.** After each step it stores the residual ``s = y - mean`` of the
   one-step-ahead forecast. The calibrated upper ``q``-bound is ``mean + Q(q_eff)``, where
   ``Q`` is the empirical quantile (with the finite-sample ``ceil((n+1) q) / n`` correction)
   of the last ``window`` residuals; a level beyond the sample reads the top residuals as an
   exponential tail (:func:`score_quantile`), so rare-burst levels stay apart for small ``n``.
   (Residuals normalised by the forecast's spread were
   tried first: a burst's onset after an idle spell, divided by an idle spell's tiny spread,
   later multiplied by a busy spell's, gave bounds a hundred times too high.)
2. **Adaptive conformal inference** (Gibbs & Candès, 2021). Each level keeps an effective level
   ``q_eff`` updated after every outcome with ``q_eff += gamma * (miss - (1 - q))``, so the
   long-run share of steps whose count exceeds the bound converges to ``1 - q`` even when the
   data drift (the scores are not exchangeable) or counts are discrete (ties).

3. **Mondrian bins.** Counts are strongly heteroscedastic, so residuals are also kept per
   bin of the forecast mean (``bin_edges``, in counts per step); a bound uses its own bin's
   residuals once that bin holds ``min_scores`` of them (all residuals before): a quiet
   function's bound reflects how often quiet steps turn busy, a busy one's reflects its noise.

The same score quantile is applied at every horizon step (the forecaster's ``std`` carries the
widening with the horizon). Until ``min_scores`` outcomes are seen, the raw quantile is passed
through (a normal quantile from the forecast's mean and spread). State is plain lists and
floats (JSON round-trip through :meth:`state_dict`).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ConformalCalibrator", "score_quantile"]

_STD_FLOOR = 0.5


def score_quantile(scores: np.ndarray, level: float) -> float:
    """Conformal ``level``-quantile of sorted residuals, with a tail beyond the largest.

    Within the sample the split-conformal rank ``ceil((n + 1) level)`` is used. A level
    beyond it (``(n + 1) level > n``, e.g. 0.9975 with fewer than 399 residuals) has no order
    statistic: returning the largest residual there would give every such level the same
    bound. Instead the top quarter of the residuals (at least 2) is read as an exponential
    tail above the order statistic just below it, ``u``: with mean excess ``beta`` and
    exceedance share ``k / (n + 1)``, ``Q(level) = u + beta * ln(k / ((n + 1)(1 - level)))``,
    never below the largest residual (ties, ``beta = 0``, give the largest).

    Args:
        scores: residuals sorted ascending (1-D, at least one).
        level: quantile level; <= 0 and >= 1 give the extremes minus / plus one.

    Returns:
        The bound's offset from the forecast mean.
    """
    n = int(scores.shape[0])
    if level >= 1.0:
        return float(scores[-1]) + 1.0
    if level <= 0.0:
        return float(scores[0]) - 1.0
    rank = math.ceil((n + 1) * level)
    if rank <= n:
        return float(scores[rank - 1])
    top = float(scores[-1])
    k = max(2, n // 4)
    if n <= k:
        return top
    u = float(scores[n - k - 1])
    beta = float(np.mean(scores[n - k :])) - u
    if beta <= 0.0:
        return top
    return max(top, u + beta * math.log(k / ((n + 1) * (1.0 - level))))


class ConformalCalibrator:
    """Calibrates upper quantiles of one function's per-step counts.

    Args:
        levels: quantile levels to track, each in (0, 1).
        window: number of recent scores kept.
        gamma: step size of the adaptive level update (0 disables it: plain split conformal).
        min_scores: scores needed before calibrated bounds replace the raw ones.
        bin_edges: forecast-mean edges (counts per step) of the Mondrian bins.

    Example:
        >>> cal = ConformalCalibrator(levels=(0.9,))
        >>> for y, mu in [(3, 2.0), (1, 2.0)]:
        ...     cal.update(mean=mu, std=1.5, observed=y)
    """

    def __init__(
        self,
        *,
        levels: Sequence[float] = (0.5, 0.9, 0.95, 0.99),
        window: int = 288,
        gamma: float = 0.01,
        min_scores: int = 12,
        bin_edges: Sequence[float] = (1.0, 4.0, 16.0, 64.0),
    ) -> None:
        if any(not 0.0 < q < 1.0 for q in levels):
            raise ValueError(f"levels must be in (0, 1), got {list(levels)}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.levels = tuple(float(q) for q in levels)
        self.window = int(window)
        self.gamma = float(gamma)
        self.min_scores = int(min_scores)
        self.bin_edges = tuple(float(e) for e in bin_edges)
        self._scores: deque[float] = deque(maxlen=self.window)
        self._binned: list[deque[float]] = [
            deque(maxlen=self.window) for _ in range(len(self.bin_edges) + 1)
        ]
        self._q_eff: dict[float, float] = {q: q for q in self.levels}
        self._misses: dict[float, int] = {q: 0 for q in self.levels}
        self._seen = 0

    @property
    def n_scores(self) -> int:
        """Scores currently held."""
        return len(self._scores)

    def effective_level(self, q: float) -> float:
        """The adapted level used for nominal ``q`` (``q`` itself if untracked)."""
        return self._q_eff.get(q, q)

    def _bin(self, mean: float) -> int:
        return bisect.bisect_right(self.bin_edges, mean)

    def track(self, q: float) -> None:
        """Also calibrate level ``q`` (adaptive level and miss count) from now on."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"level must be in (0, 1), got {q}")
        if q not in self._q_eff:
            self.levels = (*self.levels, float(q))
            self._q_eff[q] = q
            self._misses[q] = 0

    def _bound(self, level: float, mean: float, std: float) -> float:
        """Upper bound at effective ``level`` for one forecast (binned residuals if enough)."""
        pool = self._binned[self._bin(mean)]
        if len(pool) >= self.min_scores:
            return mean + self._quantile(pool, level)
        del std
        return mean + self._quantile(self._scores, level)

    @staticmethod
    def _quantile(pool: deque[float], level: float) -> float:
        scores = np.sort(np.fromiter(pool, dtype=np.float64, count=len(pool)))
        return score_quantile(scores, level)

    def upper(self, mean: float | np.ndarray, std: float | np.ndarray, q: float) -> np.ndarray:
        """Calibrated ``q``-quantile of the count for forecasts with this mean and std.

        Args:
            mean: forecast mean(s) (counts per step); any shape.
            std: forecast standard deviation(s), same shape.
            q: nominal level in (0, 1).

        Returns:
            Non-negative bounds, the shape of ``mean``. Before ``min_scores`` outcomes, the
            normal quantile of the raw forecast.
        """
        mu = np.asarray(mean, dtype=np.float64)
        sd = np.maximum(np.asarray(std, dtype=np.float64), _STD_FLOOR)
        if len(self._scores) < self.min_scores:
            from statistics import NormalDist

            return np.maximum(mu + NormalDist().inv_cdf(q) * sd, 0.0)
        level = self.effective_level(q)
        if mu.ndim == 0:
            bound = np.asarray(self._bound(level, float(mu), float(sd)), np.float64)
            return np.asarray(np.maximum(bound, 0.0), np.float64)
        flat_mu, flat_sd = mu.reshape(-1), np.broadcast_to(sd, mu.shape).reshape(-1)
        out = [
            self._bound(level, float(m), float(d)) for m, d in zip(flat_mu, flat_sd, strict=True)
        ]
        return np.asarray(np.maximum(np.asarray(out).reshape(mu.shape), 0.0), np.float64)

    def upper_many(
        self, mean: float | np.ndarray, std: float | np.ndarray, qs: tuple[float, ...]
    ) -> np.ndarray:
        """:meth:`upper` at several levels at once (each residual pool sorted once).

        Args:
            mean: forecast mean(s) (counts per step); any shape.
            std: forecast standard deviation(s), same shape.
            qs: nominal levels in (0, 1).

        Returns:
            ``len(qs) x mean.shape`` bounds, row ``i`` equal to ``upper(mean, std, qs[i])``.
        """
        mu = np.asarray(mean, dtype=np.float64)
        if len(self._scores) < self.min_scores:
            return np.stack([self.upper(mu, std, q) for q in qs])
        levels = [self.effective_level(q) for q in qs]
        flat = mu.reshape(-1)
        out = np.empty((len(qs), flat.size))
        offsets: dict[int, np.ndarray] = {}  # per residual pool: its offset at every level
        for j, m in enumerate(flat.tolist()):
            pool = self._binned[self._bin(m)]
            if len(pool) < self.min_scores:
                pool = self._scores
            key = id(pool)
            if key not in offsets:
                scores = np.sort(np.fromiter(pool, dtype=np.float64, count=len(pool)))
                offsets[key] = np.array([score_quantile(scores, level) for level in levels])
            out[:, j] = m + offsets[key]
        return np.maximum(out, 0.0).reshape((len(qs), *mu.shape))

    def update(self, *, mean: float, std: float, observed: float) -> None:
        """Record the outcome of a one-step-ahead forecast and adapt the levels.

        Call once per step, after the bounds for that step were issued (misses are judged
        against the bounds the current state gives, i.e. those issued).

        Args:
            mean: the forecast mean made for this step (count).
            std: its standard deviation.
            observed: the count that arrived.
        """
        if len(self._scores) >= self.min_scores:
            bounds = self.upper_many(mean, std, self.levels)  # one sort for every level
            for q, bound in zip(self.levels, bounds.tolist(), strict=True):
                miss = 1.0 if observed > bound + 1e-9 else 0.0
                self._misses[q] += int(miss)
                q_new = self._q_eff[q] + self.gamma * (miss - (1.0 - q))
                self._q_eff[q] = min(max(q_new, 0.0), 1.0)
            self._seen += 1
        self._scores.append(observed - mean)
        self._binned[self._bin(mean)].append(observed - mean)

    def coverage(self) -> dict[float, float]:
        """Empirical share of calibrated steps at or below each level's bound, so far."""
        if self._seen == 0:
            return {}
        return {q: 1.0 - self._misses[q] / self._seen for q in self.levels}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "levels": list(self.levels),
            "scores": list(self._scores),
            "binned": [list(b) for b in self._binned],
            "q_eff": [self._q_eff[q] for q in self.levels],
            "misses": [self._misses[q] for q in self.levels],
            "seen": self._seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (levels must match)."""
        levels = tuple(float(q) for q in state["levels"])
        if not set(self.levels) <= set(levels):
            raise ValueError(f"calibrator levels {levels} lack some of {self.levels}")
        self.levels = levels
        self._scores = deque((float(s) for s in state["scores"]), maxlen=self.window)
        binned = state.get("binned") or [[] for _ in self._binned]
        if len(binned) != len(self._binned):
            raise ValueError("calibrator bins do not match")
        self._binned = [deque((float(s) for s in b), maxlen=self.window) for b in binned]
        self._q_eff = {q: float(v) for q, v in zip(self.levels, state["q_eff"], strict=True)}
        self._misses = {q: int(v) for q, v in zip(self.levels, state["misses"], strict=True)}
        self._seen = int(state["seen"])
