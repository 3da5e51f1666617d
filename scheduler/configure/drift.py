"""Change detection for online re-tuning.

A mean and a spread describe a bursty reference badly (one window in six a burst: two humps,
one wide bell), so a CUSUM standardised by them sees a doubled background only through the
bursts, and a burst its short reference missed is a dozen deviations at once. The detectors
the policy runs instead model the reference as it is and ask, window by window, whether the
windows since fit it shifted by a factor better than they fit it unshifted:

* :class:`LoadShiftDetector`: the load. Each reference window's rate, as a mixture (its
  counts' Poisson noise not counted twice), doubled or halved.
* :class:`LatencyShiftDetector`: the tail latency. A kernel density of the reference
  windows' log tails, shifted by ``±log(factor)``.

Both run two CUSUMs of log-likelihood ratios clipped per window, so one odd window never
alarms and an ordinary one takes back what an odd one added. :class:`CusumDetector` is the
two-sided CUSUM on a standardised signal they replaced (``bench/drift_detection.py`` compares
them). :class:`TickWindows` turns per-tick figures into per-window ones first, so traffic
that is bursty by nature (a burst every few minutes) is one distribution, not a change at
every burst. Pure: values in, booleans out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln, logsumexp

__all__ = ["CusumDetector", "LatencyShiftDetector", "LoadShiftDetector", "TickWindows", "Window"]


class CusumDetector:
    """Two-sided CUSUM (Page, 1954) with a learned reference.

    Args:
        reference: observations used to estimate the in-control mean and spread.
        drift: slack per observation, in reference standard deviations.
        threshold: alarm level of either cumulative sum, in standard deviations.
        min_std: floor of the reference spread (in the signal's units), so a constant
            reference does not make every wiggle an alarm.
    """

    def __init__(
        self,
        *,
        reference: int = 20,
        drift: float = 1.0,
        threshold: float = 8.0,
        min_std: float = 0.05,
    ) -> None:
        if reference < 2 or drift < 0 or threshold <= 0 or min_std <= 0:
            raise ValueError("need reference >= 2, drift >= 0, threshold > 0, min_std > 0")
        self.reference = reference
        self.drift = drift
        self.threshold = threshold
        self.min_std = min_std
        self.reset()

    def reset(self) -> None:
        """Forget the reference and the sums."""
        self._ref: list[float] = []
        self.mean = math.nan
        self.std = math.nan
        self.restart()

    def restart(self) -> None:
        """Zero both sums, keeping the reference (after an alarm has been answered)."""
        self.high = 0.0
        self.low = 0.0

    @property
    def ready(self) -> bool:
        return len(self._ref) >= self.reference

    def prime(self, values: Sequence[float]) -> None:
        """Start over with ``values`` as the reference (all of them, however many; with
        fewer than ``reference`` the next observations complete it)."""
        self.reset()
        self._ref = [float(v) for v in values if math.isfinite(v)]
        if self.ready:
            self._fit_reference()

    def _fit_reference(self) -> None:
        n = len(self._ref)
        self.mean = sum(self._ref) / n
        var = sum((x - self.mean) ** 2 for x in self._ref) / (n - 1)
        self.std = max(math.sqrt(var), self.min_std)

    def update(self, value: float) -> bool:
        """Feed one observation; True when a change is detected (then call :meth:`reset`)."""
        if not math.isfinite(value):
            return False
        if not self.ready:
            self._ref.append(value)
            if self.ready:
                self._fit_reference()
            return False
        z = (value - self.mean) / self.std
        self.high = max(0.0, self.high + z - self.drift)
        self.low = max(0.0, self.low - z - self.drift)
        return self.high > self.threshold or self.low > self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {"ref": list(self._ref), "high": self.high, "low": self.low}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prime([float(x) for x in state.get("ref", [])])
        self.high = float(state.get("high", 0.0))
        self.low = float(state.get("low", 0.0))


class _ShiftCusum:
    """Two one-sided CUSUMs (Page, 1954) of per-window log-likelihood ratios, "shifted up"
    and "shifted down" against "as the reference", each window's ratio clipped to
    ``±max_step`` nats; an alarm when either sum passes ``threshold`` nats. "Shifted" is
    by ``factor`` (or its inverse); ``reference`` windows are needed before it watches."""

    def __init__(self, reference: int, factor: float, threshold: float, max_step: float) -> None:
        if reference < 1 or factor <= 1 or threshold <= 0 or max_step <= 0:
            raise ValueError("need reference >= 1, factor > 1, threshold > 0, max_step > 0")
        self.reference = reference
        self.factor = factor
        self.threshold = threshold
        self.max_step = max_step
        self.restart()

    def restart(self) -> None:
        """Zero both sums, keeping the reference (after an alarm has been answered)."""
        self.high = 0.0
        self.low = 0.0

    def _sums(self) -> dict[str, float]:
        return {"high": self.high, "low": self.low}

    def _load_sums(self, state: dict[str, Any]) -> None:
        self.high = float(state.get("high", 0.0))
        self.low = float(state.get("low", 0.0))

    def step(self, up: float, down: float) -> bool:
        """Add one window's ratios (nats); True on an alarm."""
        cap = self.max_step
        self.high = max(0.0, self.high + min(max(up, -cap), cap))
        self.low = max(0.0, self.low + min(max(down, -cap), cap))
        return self.high > self.threshold or self.low > self.threshold


class LoadShiftDetector(_ShiftCusum):
    """Whether the load moved by ``factor`` (up or down) from a reference of windows.

    In control, a window's arrival count follows a mixture of rates learned from the
    reference windows: the nonparametric maximum-likelihood mixing distribution (Kiefer and
    Wolfowitz, 1956; fitted by EM over a grid of rates) of the windows' counts, each rate's
    count a Gamma-Poisson whose rate varies by at least ``1 / sqrt(max_shape)`` (real
    arrivals come in batches; a handful of windows never shows every level a load takes) and
    by at least ``1 / sqrt(N)`` for a rate that ``N`` reference arrivals stand behind. A
    steady Poisson load is one rate, a load with a burst every few minutes two, and the
    Poisson noise of the windows' own counts is not counted twice. Out of control, the same
    mixture at ``factor`` (or ``1 / factor``) times every rate. Per window, the
    log-likelihood ratio of each shift against the reference, clipped to ``±max_step`` nats
    (so a flash of traffic, one or two odd windows at the defaults, never alarms alone),
    feeds a one-sided CUSUM (Page, 1954); an alarm fires when either passes ``threshold``
    nats. A doubled background that the bursty reference never showed is strong evidence at
    once; a burst like the reference's bursts is none.

    Args:
        reference: windows needed before it watches (a primed reference with fewer
            completes itself from the next ones).
        factor: the shift each side tests (> 1; 2: "doubled" against "halved").
        threshold: alarm level of either sum, in nats.
        max_step: the most one window adds, in nats.
        max_shape: the Gamma shape cap that floors each rate's spread.
        min_arrivals: arrivals the reference needs too: a quiet load's rate is known only
            from enough of them, so its reference grows from the next windows until then.
    """

    def __init__(
        self,
        *,
        reference: int = 4,
        factor: float = 2.0,
        threshold: float = 8.0,
        max_step: float = 4.0,
        max_shape: float = 25.0,
        min_arrivals: float = 50.0,
    ) -> None:
        super().__init__(reference, factor, threshold, max_step)
        if max_shape <= 0 or min_arrivals < 0:
            raise ValueError("need max_shape > 0 and min_arrivals >= 0")
        self.min_arrivals = min_arrivals
        self.max_shape = max_shape
        self.reset()

    def reset(self) -> None:
        """Forget the reference and the sums."""
        self._ref: list[tuple[float, float]] = []
        self._arrivals = 0.0
        self._rates = np.empty(0)  # the mixture's rates (per second) and log weights
        self._log_w = np.empty(0)
        self._shape = np.empty(0)
        self.restart()

    @property
    def ready(self) -> bool:
        return len(self._ref) >= self.reference and self._arrivals >= self.min_arrivals

    def prime(self, windows: Sequence[tuple[float, float]]) -> None:
        """Start over with ``windows`` (``(arrivals, seconds)`` pairs) as the reference."""
        self.reset()
        self._ref = [(float(n), float(d)) for n, d in windows if _usable(n, d)]
        self._arrivals = sum(n for n, _ in self._ref)
        if self.ready:
            self._fit_reference()

    def _fit_reference(self) -> None:
        counts = np.array([n for n, _ in self._ref])
        seconds = np.array([d for _, d in self._ref])
        observed = (counts + 0.5) / seconds
        rates = np.geomspace(observed.min() / 2, observed.max() * 2, _GRID)
        log_lik = self._log_counts(
            counts[:, None], seconds[:, None], rates[None, :], self.max_shape
        )
        weights = np.full(_GRID, 1.0 / _GRID)
        for _ in range(_EM_STEPS):  # EM for the mixing weights over the fixed grid
            post = np.exp(log_lik - log_lik.max(axis=1, keepdims=True)) * weights
            post /= post.sum(axis=1, keepdims=True)
            weights = post.mean(axis=0)
        keep = weights > 1e-6
        self._rates = rates[keep]
        self._log_w = np.log(weights[keep] / weights[keep].sum())
        # each rate is known from the arrivals behind it: its spread is at least theirs
        support = (post * counts[:, None]).sum(axis=0)[keep]
        self._shape = np.minimum(self.max_shape, support + 0.5)

    def _log_counts(self, counts: Any, seconds: Any, rates: Any, shape: Any) -> Any:
        """Log Gamma-Poisson probability of ``counts`` in ``seconds`` at mean ``rates``."""
        mean = rates * seconds
        return (
            gammaln(counts + shape)
            - gammaln(shape)
            - gammaln(counts + 1.0)
            + shape * np.log(shape / (shape + mean))
            + counts * np.log(mean / (shape + mean))
        )

    def _log_fit(self, arrivals: float, duration_s: float, scale: float) -> float:
        """Log probability of ``arrivals`` in ``duration_s`` with every rate times ``scale``."""
        per_rate = self._log_counts(arrivals, duration_s, self._rates * scale, self._shape)
        return float(logsumexp(per_rate + self._log_w))

    def update(self, arrivals: float, duration_s: float) -> bool:
        """Feed one window; True when the load moved (then prime a new reference)."""
        if not _usable(arrivals, duration_s):
            return False
        if not self.ready:
            self._ref.append((float(arrivals), float(duration_s)))
            self._arrivals += float(arrivals)
            if self.ready:
                self._fit_reference()
            return False
        base = self._log_fit(arrivals, duration_s, 1.0)
        up = self._log_fit(arrivals, duration_s, self.factor) - base
        down = self._log_fit(arrivals, duration_s, 1.0 / self.factor) - base
        return self.step(up, down)

    def state_dict(self) -> dict[str, Any]:
        return {"ref": [list(w) for w in self._ref], **self._sums()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a reference that is not ``(arrivals, seconds)`` pairs (a state from
        before this detector) is dropped and learned again from the next windows."""
        ref = state.get("ref", [])
        pairs = [w for w in ref if isinstance(w, list | tuple) and len(w) == 2]
        self.prime([(float(n), float(d)) for n, d in pairs])
        self._load_sums(state)


class LatencyShiftDetector(_ShiftCusum):
    """Whether the latency moved by ``factor`` (up or down) from a reference of windows.

    In control, a window's log tail latency follows a kernel density of the reference
    windows' log tails (Gaussian kernels ``max(min_width, Silverman's rule)`` wide: a few
    windows never show every level a tail takes); out of control, the same density shifted
    by ``±log(factor)``. The same CUSUMs of clipped log-likelihood ratios as
    :class:`LoadShiftDetector`: a window far above every reference window (a burst the
    reference missed) adds at most ``max_step``, and the next ordinary window takes about as
    much away, so only a lasting change adds up.

    Args:
        reference: windows needed before it watches (a primed reference with fewer
            completes itself from the next ones).
        factor: the shift each side tests (> 1).
        threshold: alarm level of either sum, in nats.
        max_step: the most one window adds, in nats.
        min_width: the narrowest kernel, in log seconds (0.15: about 15 %).
        max_reference: the reference grows to this many windows: each window that comes
            while neither sum holds evidence joins it.
    """

    def __init__(
        self,
        *,
        reference: int = 4,
        factor: float = 1.5,
        threshold: float = 8.0,
        max_step: float = 4.0,
        min_width: float = 0.15,
        max_reference: int = 30,
    ) -> None:
        super().__init__(reference, factor, threshold, max_step)
        if min_width <= 0 or max_reference < reference:
            raise ValueError("need min_width > 0 and max_reference >= reference")
        self.max_reference = max_reference
        self.min_width = min_width
        self.reset()

    def reset(self) -> None:
        """Forget the reference and the sums."""
        self._ref: list[float] = []  # log seconds
        self._width = self.min_width
        self.restart()

    @property
    def ready(self) -> bool:
        return len(self._ref) >= self.reference

    def prime(self, latencies_s: Sequence[float]) -> None:
        """Start over with ``latencies_s`` (windows' tails, seconds) as the reference."""
        self.reset()
        self._ref = [math.log(x) for x in latencies_s if math.isfinite(x) and x > 0]
        if self.ready:
            self._fit_reference()

    def _fit_reference(self) -> None:
        ref = np.asarray(self._ref)
        if len(ref) < 2:
            self._width = self.min_width
            return
        # Silverman's rule with the robust spread: a few burst windows do not widen it
        q75, q25 = np.percentile(ref, [75, 25])
        spread = min(float(ref.std(ddof=1)), float(q75 - q25) / 1.34)
        self._width = max(self.min_width, 1.06 * spread * len(ref) ** -0.2)

    def _log_fit(self, log_latency: float, shift: float) -> float:
        z = (log_latency - shift - np.asarray(self._ref)) / self._width
        return float(logsumexp(-0.5 * z * z))  # the constants cancel in every ratio

    def update(self, latency_s: float) -> bool:
        """Feed one window's tail (seconds); True when the latency moved."""
        if not (math.isfinite(latency_s) and latency_s > 0):
            return False
        x = math.log(latency_s)
        if not self.ready:
            self._ref.append(x)
            if self.ready:
                self._fit_reference()
            return False
        calm = self.high == 0.0 and self.low == 0.0
        base = self._log_fit(x, 0.0)
        shift = math.log(self.factor)
        alarm = self.step(self._log_fit(x, shift) - base, self._log_fit(x, -shift) - base)
        if calm and len(self._ref) < self.max_reference:
            # a window that came with no evidence pending is what the kept configuration
            # does: a burst the first windows missed joins the reference and is the
            # workload the next time (a lasting change adds up faster than it can join)
            self._ref.append(x)
            self._fit_reference()
        return alarm

    def state_dict(self) -> dict[str, Any]:
        return {"ref_log_s": list(self._ref), **self._sums()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a state from before this detector (no ``ref_log_s``) starts its
        reference again from the next windows."""
        self.prime([math.exp(float(x)) for x in state.get("ref_log_s", [])])
        self._load_sums(state)


_GRID = 64  # rates the reference's mixing distribution is fitted over
_EM_STEPS = 300


def _usable(arrivals: float, duration_s: float) -> bool:
    return (
        math.isfinite(arrivals) and arrivals >= 0 and math.isfinite(duration_s) and duration_s > 0
    )


@dataclass(frozen=True)
class Window:
    """``ticks`` consecutive ticks summed: their arrivals, seconds and latency figures."""

    arrivals: float
    duration_s: float
    latencies_s: tuple[float, ...]
    e2e: bool  # latencies are requests' end-to-end ones (else per-tick estimates)

    @property
    def rate(self) -> float:
        """Arrivals per second."""
        return self.arrivals / self.duration_s if self.duration_s > 0 else 0.0

    def latency(self, percentile: float) -> float:
        """The window's tail: ``percentile`` of its requests' end-to-end latencies, or the
        median of its per-tick estimates (nan when it has neither)."""
        if not self.latencies_s:
            return math.nan
        return float(np.percentile(self.latencies_s, percentile if self.e2e else 50.0))


class TickWindows:
    """Ticks grouped into back-to-back windows of ``ticks`` ticks.

    Args:
        ticks: ticks per window (the length a configuration is judged over is a natural
            choice: a trial's).
    """

    def __init__(self, ticks: int) -> None:
        if ticks < 1:
            raise ValueError(f"ticks must be >= 1, got {ticks}")
        self.ticks = ticks
        self._clear()

    def _clear(self) -> None:
        self._n = 0
        self._arrivals = 0.0
        self._duration_s = 0.0
        self._e2e: list[float] = []
        self._estimates: list[float] = []

    def add(
        self, *, arrivals: float, duration_s: float, e2e_s: Sequence[float], estimate_s: float
    ) -> Window | None:
        """Add one tick (its requests' end-to-end latencies, or else its latency estimate,
        nan if none); returns the window it closes, if it closes one."""
        self._n += 1
        self._arrivals += arrivals
        self._duration_s += duration_s
        self._e2e.extend(float(x) for x in e2e_s)
        if not e2e_s and math.isfinite(estimate_s):
            self._estimates.append(float(estimate_s))
        if self._n < self.ticks:
            return None
        e2e = bool(self._e2e)
        window = Window(
            arrivals=self._arrivals,
            duration_s=self._duration_s,
            latencies_s=tuple(self._e2e if e2e else self._estimates),
            e2e=e2e,
        )
        self._clear()
        return window

    def state_dict(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "arrivals": self._arrivals,
            "duration_s": self._duration_s,
            "e2e": list(self._e2e),
            "estimates": list(self._estimates),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._n = int(state.get("n", 0))
        self._arrivals = float(state.get("arrivals", 0.0))
        self._duration_s = float(state.get("duration_s", 0.0))
        self._e2e = [float(x) for x in state.get("e2e", [])]
        self._estimates = [float(x) for x in state.get("estimates", [])]
