"""Periodic experts: will a function be called in the next ``h`` seconds, read off past cycles.

A function driven by timers is called at fixed phases of one or more periods (a cron job
every 5 minutes; several timers merged onto one workflow; the same timer thinned by a
workflow mix). The time since the last call (:class:`~scheduler.forecast.gaps.GapModel`)
cannot see such structure once timers overlap, and a rate forecast smears it over a step.
Each *periodic expert* ``P`` looks at the same window one, two, ... ``cycles`` periods ago:

    p_P(t, h) = (#{k <= K_P : a call in (t - kP, t - kP + h]} + alpha * base) / (K_P + alpha)

(windows widened by ``tol_s`` for clock jitter; ``K_P`` the cycles that fit in ``span_s``,
at least two, at most ``max_cycles``, of those observed so far: a sparse function called at
second 30 of one minute in eight still reads as "only ever at second 30"), shrunk
towards the *base rate* ``base``: the share of the last back-to-back windows of length ``h``
that saw a call, which is itself an expert (the memoryless one). The periods tried are a
ladder of calendar periods (cron's) plus the most frequent idle gaps the function showed, so
timers at other periods are found too. Which expert to believe is left to
:class:`~scheduler.forecast.mixture.ExpertMixture`, which scores them as they go.

Calls are kept as runs of consecutive active ticks (:class:`ActivityLog`), so a busy
function costs one run, and every query is one vectorised :func:`numpy.searchsorted`. On a
regular tick grid (the simulator's) the log also keeps the running count of active ticks
per tick, so a window is two reads of it instead of a binary search.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CALENDAR_PERIODS_S", "MIN_PERIOD_TICKS", "ActivityLog", "PeriodicExperts"]

# cron's usual periods: half a minute to an hour
CALENDAR_PERIODS_S: tuple[float, ...] = (
    30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 420.0, 480.0, 540.0, 600.0,
    900.0, 1200.0, 1800.0, 3600.0,
)  # fmt: skip

# a learned period is an idle gap of more ticks than this (back-to-back calls are none)
MIN_PERIOD_TICKS = 2

# (window starts, window ends, segment starts, windows per segment, earliest finite start)
_Layout = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]


class ActivityLog:
    """Ticks that saw a call (or a request in flight), as runs ``[start, end]`` of tick times.

    Args:
        span_s: how far back runs are kept (seconds).
        max_runs: most runs kept (the oldest go first).
    """

    def __init__(self, *, span_s: float, max_runs: int = 2048) -> None:
        if not span_s > 0 or max_runs < 1:
            raise ValueError(f"span_s must be > 0 and max_runs >= 1, got {span_s}, {max_runs}")
        self.span_s = float(span_s)
        self.max_runs = int(max_runs)
        self._origin_s: float | None = None  # first tick observed: nothing is known before
        self._fill([], [])
        self._grid: _TickCounts | None = None  # running counts while the ticks are regular
        self._grid_off = False  # an irregular tick was seen: runs only from then on

    def _fill(self, starts: list[float], ends: list[float]) -> None:
        """Hold these runs in fresh arrays: run ``i`` at index ``lo + 1 + i`` and a sentinel
        run at -inf at index ``lo``, so every window query finds a run; queries read views,
        updates write in place (dropped runs only move ``lo``)."""
        n = len(starts)
        self._s = np.full(max(64, 2 * (n + 1)), -np.inf)
        self._e = np.full(self._s.size, -np.inf)
        self._s[1 : n + 1] = starts
        self._e[1 : n + 1] = ends
        self._lo = 0
        self._n = n

    def _views(self) -> tuple[np.ndarray, np.ndarray]:
        """Starts and ends of the runs held, the sentinel first."""
        end = self._lo + self._n + 1
        return self._s[self._lo : end], self._e[self._lo : end]

    @property
    def origin_s(self) -> float | None:
        """Time of the oldest tick still covered (None before the first observation)."""
        return self._origin_s

    @property
    def runs(self) -> list[tuple[float, float]]:
        """The runs held, oldest first."""
        starts, ends = self._views()
        return list(zip(starts[1:].tolist(), ends[1:].tolist(), strict=True))

    def observe(self, now_s: float, *, active: bool, tick_s: float) -> None:
        """Record the tick ending at ``now_s``."""
        if self._origin_s is None:
            self._origin_s = now_s - tick_s
        if not self._grid_off:
            self._observe_grid(now_s, active=active, tick_s=tick_s)
        last = self._lo + self._n
        if active:
            if self._n and now_s - self._e[last] <= 1.5 * tick_s:
                self._e[last] = now_s
            else:
                if last + 2 > self._s.size:  # full: compact (and grow) first
                    starts, ends = self._views()
                    self._fill(starts[1:].tolist(), ends[1:].tolist())
                    last = self._n
                self._s[last + 1] = self._e[last + 1] = now_s
                self._n += 1
        cut = now_s - self.span_s
        self._origin_s = max(self._origin_s, cut)
        old = 0
        while old < self._n and self._e[self._lo + 1 + old] < cut:
            old += 1
        capped = max(self._n - old - self.max_runs, 0)
        if old + capped:
            self._lo += old + capped  # the last run dropped becomes the sentinel
            self._n -= old + capped
            self._s[self._lo] = self._e[self._lo] = -np.inf
        if capped:  # runs dropped for the cap: the time they covered is unknown now
            self._origin_s = max(self._origin_s, float(self._s[self._lo + 1]) - tick_s)

    def _observe_grid(self, now_s: float, *, active: bool, tick_s: float) -> None:
        """Keep the running counts while every tick lands on the grid of the first one (a
        log restored from runs starts them from the runs)."""
        grid = self._grid
        if grid is None:
            grid = _TickCounts.start(now_s, tick_s, self.span_s, self.runs)
            if grid is None:
                self._grid_off = True
            else:
                grid.add_now(active)
                self._grid = grid
            return
        index = grid.index_of(now_s, tick_s)
        if index is None or index <= grid.last:
            self._grid, self._grid_off = None, True
            return
        grid.advance(index, active)

    def grid_reader(self, now_s: float, min_width_s: float) -> tuple[np.ndarray, int, float] | None:
        """``(running counts, position of now in them, tick)`` when windows at least
        ``min_width_s`` wide can be read off the tick grid at ``now_s`` (the last tick
        observed): the count of active ticks in ``(lo, hi]`` is ``counts[p + floor(hi /
        tick)] - counts[p + floor(lo / tick)]`` for offsets from now, clipped to the counts
        held (older windows read as quiet). None: ask :meth:`active_in`."""
        grid = self._grid
        if grid is None or min_width_s < grid.tick_s:
            return None
        if grid.index_of(now_s, grid.tick_s) != grid.last:
            return None
        return grid.counts, grid.last - grid.base, grid.tick_s

    def any_active(self, lo: float, hi: float) -> bool:
        """Whether a recorded active tick lies in ``(lo, hi]`` (one window)."""
        grid = self._grid
        if grid is not None and hi - lo >= grid.tick_s:
            return grid.count_in(lo, hi) > 0
        starts, ends = self._views()
        return bool(ends[int(starts.searchsorted(hi, side="right")) - 1] > lo)

    def active_in(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Whether a recorded active tick lies in ``(lo, hi]``, element-wise."""
        if not self._n:
            return np.zeros(np.shape(lo), dtype=bool)
        starts, ends = self._views()
        found: np.ndarray = ends[starts.searchsorted(hi, side="right") - 1] > lo
        return found

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        starts, ends = self._views()
        return {
            "starts": starts[1:].tolist(),
            "ends": ends[1:].tolist(),
            "origin_s": self._origin_s,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        starts = [float(v) for v in state.get("starts", [])]
        ends = [float(v) for v in state.get("ends", [])]
        if len(starts) != len(ends):
            raise ValueError("activity log: starts and ends differ in length")
        origin = state.get("origin_s")
        self._origin_s = None if origin is None else float(origin)
        self._fill(starts, ends)
        self._grid, self._grid_off = None, False  # rebuilt from the runs at the next tick


class _TickCounts:
    """Running count of active ticks on a regular grid ``t0 + i x tick``.

    ``counts[i - base]`` is the number of active ticks with index ``<= i``; index -1 (the
    time before the first tick) counts 0. The buffer holds at least ``keep`` ticks before
    the latest and is compacted in place when full."""

    _MAX_TICKS = 1 << 18  # a longer span (in ticks) is left to the runs

    def __init__(self, t0_s: float, tick_s: float, keep: int) -> None:
        self.t0_s, self.tick_s, self.keep = t0_s, tick_s, keep
        self.counts = np.zeros(2 * keep + 2, dtype=np.int64)
        self.base = -1  # index of counts[0]
        self.last = 0  # index of the latest tick

    @classmethod
    def start(
        cls, now_s: float, tick_s: float, span_s: float, runs: Sequence[tuple[float, float]]
    ) -> _TickCounts | None:
        """Counts whose latest tick is ``now_s`` (not yet counted), holding the ``runs``
        recorded before it; None when the span is too long in ticks or a run is off this
        grid."""
        if not tick_s > 0 or span_s / tick_s > cls._MAX_TICKS:
            return None
        keep = math.ceil(span_s / tick_s) + 8
        back: list[tuple[int, int]] = []  # each run as ticks before now
        for start, end in runs:
            a, b = (now_s - start) / tick_s, (now_s - end) / tick_s
            if abs(a - round(a)) > 1e-9 or abs(b - round(b)) > 1e-9:
                return None
            if round(a) <= 0 or round(b) <= 0:
                return None
            back.append((min(round(a), keep), min(round(b), keep)))
        oldest = max((a for a, _ in back), default=0)
        grid = cls(now_s - oldest * tick_s, tick_s, keep)
        grid.last = oldest
        marks = np.zeros(oldest + 1, dtype=np.int64)
        for a, b in back:
            marks[oldest - a : oldest - b + 1] = 1
        grid.counts[1 : oldest + 2] = np.cumsum(marks)
        return grid

    def index_of(self, t_s: float, tick_s: float) -> int | None:
        """The grid index of a tick at ``t_s`` (None: off the grid, or another tick length)."""
        if tick_s != self.tick_s:
            return None
        k = (t_s - self.t0_s) / self.tick_s
        index = round(k)
        return index if abs(k - index) <= 1e-9 else None

    def add_now(self, active: bool) -> None:
        """Count the latest tick as active (or not)."""
        if active:
            self.counts[self.last - self.base] += 1

    def advance(self, index: int, active: bool) -> None:
        """Ticks after the latest up to ``index``; only ``index`` may be active."""
        if index - self.base >= self.counts.size:  # full: keep the last ``keep`` ticks
            lo = min(index - self.keep, self.last)
            kept = self.counts[lo - self.base : self.last - self.base + 1]
            self.counts[: kept.size] = kept  # (numpy copies overlapping slices first)
            self.base = lo
        total = self.counts[self.last - self.base]
        if index - self.base >= self.counts.size:  # a jump over the whole buffer: quiet
            self.counts[0] = total
            self.base = index - 1
        else:
            self.counts[self.last - self.base + 1 : index - self.base] = total
        self.counts[index - self.base] = total + (1 if active else 0)
        self.last = index

    def count_in(self, lo_s: float, hi_s: float) -> int:
        """Active ticks in ``(lo_s, hi_s]`` (ticks older than those held read as quiet)."""
        top = self.last - self.base
        j_lo = min(max(math.floor((lo_s - self.t0_s) / self.tick_s) - self.base, 0), top)
        j_hi = min(max(math.floor((hi_s - self.t0_s) / self.tick_s) - self.base, 0), top)
        return int(self.counts[j_hi] - self.counts[j_lo])


class PeriodicExperts:
    """The base rate and one periodic expert per candidate period, for one function.

    Args:
        periods_s: the calendar periods always tried.
        learned: extra periods taken from the most frequent idle gaps (at least
            ``min_gap_count`` of them each).
        span_s: history the periodic experts read (seconds): ``span_s / P`` cycles of
            period ``P``, between 2 and ``max_cycles``.
        max_cycles: most past cycles one periodic expert reads.
        base_windows: back-to-back windows the base rate reads.
        alpha: pseudo-cycles of shrinkage towards the base rate; a sequence gives every
            period and width one expert per shrinkage (a sharp one for exact timers, a
            cautious one for functions that only look periodic: the mixture picks).
        tol_s: each past window is widened by this much on both sides (clock jitter); a
            sequence gives every period one expert per width (the mixture picks the
            width that predicts the function's calls: exact timers or jittery ones).
        min_gap_count: how often a gap must recur to become a period.

    Example:
        >>> log = ActivityLog(span_s=3600.0)
        >>> for t in range(1, 1201):  # a call at second 30 of every minute
        ...     log.observe(float(t), active=t % 60 == 30, tick_s=1.0)
        >>> experts = PeriodicExperts(periods_s=(60.0,), learned=0)
        >>> base, p60 = experts.predict(log, now_s=1227.0, horizon_s=3.0)[0]
        >>> round(float(base), 2), round(float(p60), 2)  # (20 cycles + 1 x base) / 21
        (0.05, 0.95)
    """

    def __init__(
        self,
        *,
        periods_s: Sequence[float] = CALENDAR_PERIODS_S,
        learned: int = 2,
        span_s: float = 7200.0,
        max_cycles: int = 120,
        base_windows: int = 256,
        alpha: float | Sequence[float] = 1.0,
        tol_s: float | Sequence[float] = 1.0,
        min_gap_count: int = 3,
    ) -> None:
        tols = (float(tol_s),) if isinstance(tol_s, (int, float)) else tuple(map(float, tol_s))
        alphas = (float(alpha),) if isinstance(alpha, (int, float)) else tuple(map(float, alpha))
        if not periods_s or min(periods_s) <= 0 or learned < 0 or max_cycles < 2:
            raise ValueError("periods_s must be positive, learned >= 0 and max_cycles >= 2")
        if not span_s > 0:
            raise ValueError(f"span_s must be > 0, got {span_s}")
        if not alphas or min(alphas) <= 0 or not tols or min(tols) < 0:
            raise ValueError("alpha > 0 and tol_s >= 0 (a number or a non-empty sequence)")
        if base_windows < 1 or min_gap_count < 1:
            raise ValueError("base_windows >= 1 and min_gap_count >= 1")
        self.calendar = tuple(sorted(float(p) for p in periods_s))
        self.learned = int(learned)
        self.window_s = float(span_s)
        self.max_cycles = int(max_cycles)
        self.base_windows = int(base_windows)
        self.alphas = tuple(dict.fromkeys(alphas))  # in the order given, no repeats
        self.tols_s = tuple(sorted(set(tols), reverse=True))  # widest first
        self.tol_s = self.tols_s[0]  # the widest: history kept, periods told apart
        self.min_gap_count = int(min_gap_count)
        self._extra: tuple[float, ...] = (0.0,) * self.learned  # 0 = no period learned yet
        self._cache: tuple[tuple[Any, ...], _Layout] | None = None
        self._tick_cache: (
            tuple[tuple[Any, ...], tuple[np.ndarray, np.ndarray, tuple[int, int]]] | None
        ) = None

    @property
    def names(self) -> tuple[str, ...]:
        """Expert names, in the order :meth:`predict` returns them: ``base`` first."""
        slots = [f"learned-{i}" for i in range(self.learned)]
        one = (*(f"period-{p:g}s" for p in self.calendar), *slots)
        if len(self.tols_s) > 1:
            one = tuple(f"{n}~{tol:g}s" for tol in self.tols_s for n in one)
        if len(self.alphas) > 1:
            one = tuple(f"{n}/a{a:g}" for a in self.alphas for n in one)
        return ("base", *one)

    @property
    def periods_s(self) -> tuple[float, ...]:
        """The periods tried (0 for a learned slot still empty); each has one expert per
        width in ``tols_s``."""
        return (*self.calendar, *self._extra)

    @property
    def history_s(self) -> float:
        """History an :class:`ActivityLog` must keep for these experts: ``span_s``, and two
        of the longest calendar period."""
        return max(self.window_s, 2.0 * max(self.calendar)) + 2.0 * self.tol_s

    def _cycles(self, periods: np.ndarray) -> np.ndarray:
        fit = np.floor(self.window_s / np.maximum(periods, 1e-9))
        cycles: np.ndarray = np.clip(fit, 2, self.max_cycles).astype(np.int64)
        return cycles

    def learn_periods(self, gaps_s: Iterable[float], *, tick_s: float) -> None:
        """Fill the learned slots with the most frequent idle gaps (at tick resolution) that
        no calendar period already covers; a slot keeps its period until another recurs
        more often (each slot is one expert, so its score follows its period)."""
        if not self.learned:
            return
        shortest = MIN_PERIOD_TICKS * tick_s
        counts = Counter(round(g / tick_s) * tick_s for g in gaps_s if g > shortest)
        near = self.tol_s + tick_s
        fresh = [
            gap
            for gap, n in counts.most_common()
            if n >= self.min_gap_count and all(abs(gap - p) > near for p in self.calendar)
        ][: self.learned]
        kept = [p for p in self._extra if p > 0 and any(abs(p - g) <= near for g in fresh)]
        for gap in fresh:
            if all(abs(gap - p) > near for p in kept):
                kept.append(gap)
        self._extra = tuple((kept + [0.0] * self.learned)[: self.learned])

    def predict(
        self, log: ActivityLog, *, now_s: float, horizon_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each expert's chance of a call in ``(now_s, now_s + horizon_s]``.

        Returns:
            ``(probabilities, cycles)``: one entry per :attr:`names` (base rate first);
            ``cycles`` counts the past windows each read (0: the expert has no history
            yet and repeats the base rate).
        """
        origin = log.origin_s
        n = 1 + (len(self.calendar) + self.learned) * len(self.tols_s) * len(self.alphas)
        if origin is None:
            return np.zeros(n), np.zeros(n, dtype=np.int64)
        lo_off, hi_off, segments, sizes, earliest = self._layout(horizon_s)
        reader = log.grid_reader(now_s, horizon_s)  # every window is >= horizon_s wide
        if reader is None:
            called = log.active_in(now_s + lo_off, now_s + hi_off)
        else:
            counts, at, tick_s = reader
            lo_ticks, hi_ticks, reach = self._tick_offsets(horizon_s, tick_s)
            lo_at, hi_at = lo_ticks + at, hi_ticks + at
            if at < reach[0]:  # windows older than the counts held read as quiet
                np.maximum(lo_at, 0, out=lo_at)
                np.maximum(hi_at, 0, out=hi_at)
            if reach[1] > 0:  # nothing is known after now
                np.minimum(hi_at, at, out=hi_at)
            called = counts[hi_at] > counts[lo_at]
        if earliest >= origin - now_s - 1e-9:  # every window inside the observed history
            used = sizes  # (a window at -inf, an empty slot's, is never inside nor called)
        else:
            seen = lo_off >= origin - now_s - 1e-9
            called &= seen
            used = np.add.reduceat(seen, segments)
        hits = np.add.reduceat(called, segments)
        base = (hits[0] + 0.5) / (used[0] + 1.0)
        if len(self.alphas) == 1:
            probs = (hits + self.alphas[0] * base) / (used + self.alphas[0])
            probs[0] = base
            return probs, used.astype(np.int64)
        h, u = hits[1:], used[1:]
        probs = np.concatenate(([base], *((h + a * base) / (u + a) for a in self.alphas)))
        cycles = np.concatenate(([used[0]], *(u for _ in self.alphas)))
        return probs, cycles.astype(np.int64)

    def _layout(self, horizon_s: float) -> _Layout:
        """Every window the experts read, as offsets from now (cached per horizon): the
        base rate's back-to-back windows, then each period's ``k = 1..K_P`` past windows
        (an empty learned slot gets one window that is never inside the history).

        Returns:
            ``(lo, hi, segments, sizes, earliest)``: window bounds, where each expert's
            windows start, how many of them can be inside the history, and the earliest
            finite window start (all are inside once the history reaches back that far).
        """
        key = (horizon_s, self.periods_s)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        j = np.arange(1, self.base_windows + 1, dtype=np.float64)
        lows: list[np.ndarray] = [-j * horizon_s]
        highs: list[np.ndarray] = [-(j - 1) * horizon_s]
        sizes = [j.size]
        for tol in self.tols_s:
            for period in self.periods_s:
                if period <= 0:
                    lows.append(np.array([-np.inf]))
                    highs.append(np.array([-np.inf]))
                    sizes.append(1)
                    continue
                lag = period * np.arange(1, int(self._cycles(np.array([period]))[0]) + 1)
                lows.append(-lag - tol)
                highs.append(-lag + horizon_s + tol)
                sizes.append(lag.size)
        segments = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        lo = np.concatenate(lows)
        finite = np.isfinite(lo)
        layout = (
            lo,
            np.concatenate(highs),
            segments,
            np.add.reduceat(finite, segments),
            float(lo[finite].min()),
        )
        self._cache = (key, layout)
        return layout

    def _tick_offsets(
        self, horizon_s: float, tick_s: float
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """The windows of :meth:`_layout` in ticks from now, ``floor(offset / tick)`` (a
        window at -inf reads nothing: both ends now), and ``(ticks back the oldest start
        reaches, ticks ahead the latest end reaches)``."""
        key = (horizon_s, self.periods_s, tick_s)
        if self._tick_cache is not None and self._tick_cache[0] == key:
            return self._tick_cache[1]
        lo_off, hi_off = self._layout(horizon_s)[:2]
        finite = np.isfinite(lo_off)
        lo = np.where(finite, np.floor(np.where(finite, lo_off, 0.0) / tick_s), 0.0)
        hi = np.where(finite, np.floor(np.where(finite, hi_off, 0.0) / tick_s), 0.0)
        lo_i, hi_i = lo.astype(np.int64), hi.astype(np.int64)
        offsets = (lo_i, hi_i, (int(-min(lo_i.min(), hi_i.min())), int(hi_i.max())))
        self._tick_cache = (key, offsets)
        return offsets

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (the learned periods)."""
        return {"learned": list(self._extra)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        extra = [float(v) for v in state.get("learned", [])]
        self._extra = tuple((extra + [0.0] * self.learned)[: self.learned])
