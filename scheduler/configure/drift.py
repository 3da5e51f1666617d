"""Change detection for online re-tuning: a two-sided CUSUM on a standardised signal.

The detector first learns a reference mean and spread from ``reference`` observations (or is
primed with them), then accumulates standardised deviations beyond a slack ``drift`` (in
standard deviations) in both directions; an alarm fires when either sum passes
``threshold``. :class:`TickWindows` turns per-tick figures into per-window ones first, so
traffic that is bursty by nature (a burst every few minutes) is one distribution, not a
change at every burst. Pure: values in, booleans out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CusumDetector", "TickWindows", "Window"]


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
