"""A Bayesian mixture of probability experts, weighted by how well each has predicted so far.

Every tick each expert states the chance of an event in a window ahead (here: a call to a
function within the look-ahead); once the window has passed, each is charged its log loss
``-log p`` (event) or ``-log(1 - p)`` (none). The mixture predicts ``sum_m w_m p_m`` with

    w_m  ~  prior_m * exp(-eta * L_m),   L_m <- decay * L_m + loss_m

which is Bayes' rule over the experts with the evidence discounted (``decay``: the process
may change; ``eta = tick / window``: windows that overlap share one outcome, so each is
counted once per window, not once per tick), and a fixed ``share`` of the prior mixed back
into the weights (Herbster and Warmuth's fixed share: the mixture never rules an event
out because one expert does). Its log loss stays within about
``log(1 / ((1 - share) prior_m)) / eta`` per window of the best expert's, whatever the
arrivals are: on timers the periodic experts win, on memoryless traffic the base rate or
the rate forecast does, with no switch to tune.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ExpertMixture", "group_prior", "refresh_weights", "resolve_many"]

_CLIP = 1e-4  # probabilities are scored inside [_CLIP, 1 - _CLIP]: one miss is not infinite


class ExpertMixture:
    """Prequential mixture of experts that each predict one event probability.

    Args:
        names: the experts, in the order their probabilities are given.
        prior: prior weight per expert (normalised); uniform when omitted.
        half_life: scored windows after which old evidence counts half.
        share: weight always given back to the prior (fixed share): no expert is ever
            trusted alone, so an event every expert calls impossible (a timer never seen)
            keeps a floor of ``share x`` the prior's prediction, and the weights can move
            to another expert as soon as it predicts better.

    Example:
        >>> mix = ExpertMixture(("always", "never"))
        >>> for t in range(20):
        ...     mix.record(float(t), float(t) + 1.0, np.array([0.9, 0.1]), tick_s=1.0)
        ...     _ = mix.resolve(float(t) + 1.0, lambda start, end: True)
        >>> [round(float(w), 3) for w in mix.weights()]  # 2 % always given back to the prior
        [0.99, 0.01]
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        prior: Sequence[float] | None = None,
        half_life: float = 3600.0,
        share: float = 0.02,
    ) -> None:
        if not names:
            raise ValueError("a mixture needs at least one expert")
        weights = np.ones(len(names)) if prior is None else np.asarray(prior, dtype=np.float64)
        if (
            weights.shape != (len(names),)
            or np.any(weights <= 0)
            or not np.all(np.isfinite(weights))
        ):
            raise ValueError(f"prior must be {len(names)} positive finite weights")
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0, got {half_life}")
        self.names = tuple(names)
        if not 0.0 <= share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {share}")
        self.share = float(share)
        self._prior = weights / weights.sum()
        self._log_prior = np.log(self._prior)
        self._shared_prior = self.share * self._prior
        # mixtures with equal keys are weighted together by refresh_weights
        self._key = (self.names, self.share, self._prior.tobytes())
        self._decay = 0.5 ** (1.0 / half_life)
        self._loss = np.zeros(len(names))
        self._weights: np.ndarray | None = None  # cached until the next score
        self._scored = 0
        # (window start, window end, eta, probabilities) not yet scored, oldest first
        self._pending: deque[tuple[float, float, float, np.ndarray]] = deque()

    @property
    def scored(self) -> int:
        """Windows scored so far."""
        return self._scored

    def weights(self) -> np.ndarray:
        """Weight of each expert: the posterior, with a ``share`` of the prior mixed back."""
        return self._current().copy()

    def predict(self, probs: np.ndarray) -> float:
        """The mixture's probability, given each expert's."""
        p = float(self._current() @ np.asarray(probs, dtype=np.float64))
        return min(max(p, 0.0), 1.0)

    def _current(self) -> np.ndarray:
        """The weights, computed once per score (cached, not copied)."""
        if self._weights is None:
            self._weights = self._weights_of(self._loss[None, :])[0]
        return self._weights

    def _weights_of(self, losses: np.ndarray) -> np.ndarray:
        """The weights for each row of ``losses`` (mixtures with this one's experts and prior)."""
        logw = self._log_prior - losses
        w: np.ndarray = np.exp(logw - logw.max(axis=1, keepdims=True))
        w *= (1.0 - self.share) / w.sum(axis=1, keepdims=True)
        w += self._shared_prior
        return w

    def record(self, start_s: float, end_s: float, probs: np.ndarray, *, tick_s: float) -> None:
        """Remember the experts' probabilities for an event in ``(start_s, end_s]``."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (len(self.names),):
            raise ValueError(f"expected {len(self.names)} probabilities, got {probs.shape}")
        eta = min(1.0, tick_s / max(end_s - start_s, tick_s))
        self._pending.append((start_s, end_s, eta, probs))

    def resolve(self, now_s: float, happened: Callable[[float, float], bool]) -> int:
        """Score every recorded window that has ended by ``now_s``.

        Args:
            now_s: current time.
            happened: ``(start, end) -> whether the event occurred in (start, end]``.

        Returns:
            Windows scored.
        """
        return resolve_many([(self, happened)], now_s)

    def _due(
        self, now_s: float, happened: Callable[[float, float], bool]
    ) -> list[tuple[float, np.ndarray, bool]]:
        """Pop the windows ended by ``now_s``: ``(eta, probabilities, event)`` each."""
        due = []
        while self._pending and self._pending[0][1] <= now_s + 1e-9:
            start, end, eta, probs = self._pending.popleft()
            due.append((eta, probs, happened(start, end)))
        return due

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state, windows still open included."""
        return {
            "names": list(self.names),
            "loss": self._loss.tolist(),
            "scored": self._scored,
            "pending": [[a, b, eta, p.tolist()] for a, b, eta, p in self._pending],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (ignored if the experts differ)."""
        if list(state.get("names", [])) != list(self.names):
            return
        loss = np.asarray(state.get("loss", []), dtype=np.float64)
        if loss.shape != self._loss.shape or not np.all(np.isfinite(loss)):
            raise ValueError("mixture state: loss does not match the experts")
        pending: deque[tuple[float, float, float, np.ndarray]] = deque()
        for a, b, eta, probs in state.get("pending", []):
            row = np.asarray(probs, dtype=np.float64)
            if row.shape != loss.shape:
                raise ValueError("mixture state: a pending window does not match the experts")
            pending.append((float(a), float(b), float(eta), row))
        self._loss = loss
        self._weights = None
        self._scored = int(state.get("scored", 0))
        self._pending = pending


def resolve_many(
    items: Sequence[tuple[ExpertMixture, Callable[[float, float], bool]]], now_s: float
) -> int:
    """:meth:`ExpertMixture.resolve` of many mixtures at ``now_s``, the log losses of those
    with as many experts computed together (the same numbers as one by one).

    Returns:
        Windows scored, over all of them.
    """
    by_size: dict[int, list[tuple[ExpertMixture, float, np.ndarray, bool]]] = {}
    for mixture, happened in items:
        for eta, probs, event in mixture._due(now_s, happened):
            by_size.setdefault(probs.size, []).append((mixture, -eta, probs, event))
    scored = 0
    for windows in by_size.values():  # (mixture, -eta, probabilities, event) each
        if len(windows) == 1:  # (one window: no stacking)
            _, minus_eta, probs, event = windows[0]
            p = np.minimum(np.maximum(probs, _CLIP), 1.0 - _CLIP)  # np.clip, without its cost
            losses = np.log(p if event else 1.0 - p)[None, :]
            losses *= minus_eta
        else:
            p = np.minimum(np.maximum(np.array([w[2] for w in windows]), _CLIP), 1.0 - _CLIP)
            losses = np.log(np.where(np.array([w[3] for w in windows])[:, None], p, 1.0 - p))
            losses *= np.array([w[1] for w in windows])[:, None]
        for (mixture, *_), loss in zip(windows, losses, strict=True):  # in order: they compound
            mixture._loss *= mixture._decay
            mixture._loss += loss
            mixture._weights = None
            mixture._scored += 1
        scored += len(windows)
    return scored


def refresh_weights(mixtures: Iterable[ExpertMixture]) -> None:
    """Compute the weights of every mixture scored since its last prediction, those with the
    same experts and prior together (the same numbers as one by one)."""
    groups: dict[tuple[Any, ...], list[ExpertMixture]] = {}
    for mixture in mixtures:
        if mixture._weights is None:
            groups.setdefault(mixture._key, []).append(mixture)
    for group in groups.values():
        weights = group[0]._weights_of(np.array([m._loss for m in group]))
        for mixture, row in zip(group, weights, strict=True):
            mixture._weights = row


def group_prior(groups: Mapping[str, int]) -> list[float]:
    """Prior weights that split the mass evenly between groups, then within each group."""
    out: list[float] = []
    for size in groups.values():
        out.extend([1.0 / (len(groups) * size)] * size)
    return out if out else [1.0]
