"""Idle-gap hazard: when will a quiet function be called next (periodic timers, sparse calls).

A function called by a timer every ``T`` seconds has idle gaps of about ``T``: from the time
since its last call (the *phase*) and the gaps seen so far (the *period*, with its jitter),
the chance of a call within the next ``h`` seconds is the empirical hazard

    P(next call in (t, t + h] | idle for t) = #{gaps g : t < g <= t + h} / #{gaps g > t}

which is ~0 for most of the period and ~1 in the last ``h`` seconds before the firing, so a
replica can be started just in time and dropped right after the call. The same estimate is a
constant ``1 - exp(-rate h)`` for a memoryless function and follows any other idle-time
shape (this is the per-function idle-time histogram of serverless-in-the-wild, read as a
hazard instead of a keep-alive window). Gaps are counted between ticks with calls, so they
have the tick's resolution; ``window`` recent gaps are kept (the model follows a changed
period within ``window`` firings).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["GapModel"]


class GapModel:
    """Idle-gap hazard of one function.

    Args:
        window: recent idle gaps kept.
        min_gaps: gaps longer than the current idle time needed for an estimate.

    Example:
        >>> m = GapModel()
        >>> for t in (0.0, 60.0, 120.0, 180.0, 240.0):
        ...     m.observe(t, active=True, tick_s=1.0)
        >>> m.probability(now_s=290.0, horizon_s=3.0), m.probability(now_s=298.0, horizon_s=3.0)
        ((0.0, 4), (1.0, 4))
    """

    def __init__(self, *, window: int = 64, min_gaps: int = 3) -> None:
        if window < 1 or min_gaps < 1:
            raise ValueError(f"window and min_gaps must be >= 1, got {window}, {min_gaps}")
        self.window = int(window)
        self.min_gaps = int(min_gaps)
        self._gaps: deque[float] = deque(maxlen=self.window)
        self._sorted: list[float] = []  # the same gaps, sorted (hazard by bisection)
        self._last_s: float | None = None

    @property
    def gaps(self) -> list[float]:
        """The idle gaps held (seconds, oldest first)."""
        return list(self._gaps)

    @property
    def last_active_s(self) -> float | None:
        """Time of the last tick with a call (None before the first)."""
        return self._last_s

    def observe(self, now_s: float, *, active: bool, tick_s: float) -> float | None:
        """Record one tick: ``active`` if the function was called (or busy) in it.

        Args:
            now_s: the tick's time (seconds).
            active: whether the tick saw a call or a request in flight.
            tick_s: tick length (unused: a gap of one tick, back-to-back activity, is a gap
                too, so a busy function reads as "called again within the next tick").

        Returns:
            The gap this tick closed (None: it closed none).
        """
        del tick_s  # every gap counts, one tick (back-to-back calls) included
        if not active:
            return None
        gap = None
        if self._last_s is not None and now_s > self._last_s:
            gap = now_s - self._last_s
            self._add(gap)
        self._last_s = now_s
        return gap

    def _add(self, gap: float) -> None:
        if len(self._gaps) == self.window:
            old = self._gaps[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._gaps.append(gap)
        bisect.insort(self._sorted, gap)

    def probability(self, *, now_s: float, horizon_s: float) -> tuple[float, int] | None:
        """Chance of a call within ``horizon_s`` and the number of gaps it rests on.

        Args:
            now_s: current time (seconds).
            horizon_s: look-ahead (seconds).

        Returns:
            ``(probability, gaps longer than the idle time)``, or None while fewer than
            ``min_gaps`` gaps exceed the idle time (the history says nothing about it).
        """
        if self._last_s is None:
            return None
        idle = now_s - self._last_s
        below = bisect.bisect_right(self._sorted, idle)
        longer = len(self._sorted) - below
        if longer < self.min_gaps:
            return None
        within = bisect.bisect_right(self._sorted, idle + horizon_s) - below
        return within / longer, longer

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"gaps": list(self._gaps), "last_s": self._last_s}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self._gaps = deque((float(g) for g in state.get("gaps", [])), maxlen=self.window)
        self._sorted = sorted(self._gaps)
        last = state.get("last_s")
        self._last_s = None if last is None else float(last)
