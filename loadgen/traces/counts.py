"""Per-minute invocation counts (the Azure 2019 layout) and their expansion into a Trace.

Real day files hold tens of thousands of functions and billions of invocations: select
functions on the counts (cheap) before expanding them into arrival times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from loadgen.trace import FunctionInfo, FunctionSummary, Trace
from testbed.core.errors import ConfigError

__all__ = ["DEFAULT_MAX_ARRIVALS", "MinuteCounts", "Spread"]

Spread = Literal["poisson", "even"]
DEFAULT_MAX_ARRIVALS = 20_000_000


@dataclass(frozen=True)
class MinuteCounts:
    """Invocation counts per function per minute.

    Attributes:
        names: function names, shape ``(F,)``.
        counts: int64 array of shape ``(F, M)``: invocations of function ``f`` in minute ``m``.
        info: name -> :class:`FunctionInfo` (owner, app, trigger, durations when known).
        source: where the counts came from.
    """

    names: tuple[str, ...]
    counts: np.ndarray
    info: dict[str, FunctionInfo] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.counts.ndim != 2 or self.counts.shape[0] != len(self.names):
            raise ConfigError(
                f"counts must have shape (functions, minutes), got {self.counts.shape} "
                f"for {len(self.names)} functions"
            )
        if self.counts.shape[1] == 0:
            raise ConfigError("counts need at least one minute")
        if len(set(self.names)) != len(self.names):
            raise ConfigError("function names must be unique")

    @property
    def minutes(self) -> int:
        """Number of minutes covered."""
        return int(self.counts.shape[1])

    def totals(self) -> np.ndarray:
        """Invocations per function over the whole window, shape ``(F,)``."""
        return np.asarray(self.counts.sum(axis=1))

    def summary(self) -> list[FunctionSummary]:
        """Per-function statistics at one-minute resolution, busiest first.

        Idle times are the gaps between consecutive minutes with invocations (in seconds,
        multiples of 60, as Shahrad et al. define them); ``cv`` is the coefficient of
        variation of the per-minute counts (burstiness; about ``1/sqrt(rate)`` for Poisson).
        """
        totals = self.totals()
        rows = []
        for i in np.lexsort((np.arange(len(self.names)), -totals)):
            row = self.counts[i]
            busy = np.flatnonzero(row)
            gaps = np.diff(busy) * 60.0
            if gaps.size:
                p50, p90, p99 = (float(x) for x in np.percentile(gaps, [50, 90, 99]))
            else:
                p50 = p90 = p99 = math.nan
            mean = float(row.mean())
            name = self.names[i]
            rows.append(
                FunctionSummary(
                    name=name,
                    count=int(totals[i]),
                    rate_per_min=mean,
                    idle_p50_s=p50,
                    idle_p90_s=p90,
                    idle_p99_s=p99,
                    cv=float(row.std() / mean) if mean > 0 else math.nan,
                    trigger=self.info.get(name, FunctionInfo()).trigger,
                )
            )
        return rows

    def subset(
        self,
        *,
        functions: list[str] | None = None,
        top: int | None = None,
        sample: int | None = None,
        triggers: list[str] | None = None,
        seed: int = 0,
    ) -> MinuteCounts:
        """Select functions: by name, by trigger, then the ``top`` busiest or a seeded sample.

        Raises:
            ConfigError: an unknown name, or nothing left to keep.
        """
        idx = np.arange(len(self.names))
        if functions is not None:
            pos = {n: i for i, n in enumerate(self.names)}
            missing = [n for n in functions if n not in pos]
            if missing:
                raise ConfigError(f"{self.source}: no function(s) {', '.join(missing[:5])}")
            idx = np.array([pos[n] for n in functions], dtype=np.int64)
        if triggers is not None:
            wanted = {t.lower() for t in triggers}
            idx = idx[[self.info.get(self.names[i], FunctionInfo()).trigger in wanted for i in idx]]
        if top is not None:
            totals = self.totals()[idx]
            order = np.lexsort((idx, -totals))
            idx = idx[order[:top]]
        if sample is not None and sample < idx.size:
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(idx, size=sample, replace=False))
        if idx.size == 0:
            raise ConfigError(f"{self.source}: the selection keeps no function")
        names = tuple(self.names[i] for i in idx)
        return MinuteCounts(
            names,
            self.counts[idx],
            {n: self.info[n] for n in names if n in self.info},
            self.source,
        )

    def to_trace(
        self,
        *,
        spread: Spread = "poisson",
        seed: int = 0,
        max_arrivals: int = DEFAULT_MAX_ARRIVALS,
    ) -> Trace:
        """Expand counts into arrival times inside each minute.

        Args:
            spread: ``"poisson"`` places a minute's ``k`` arrivals uniformly at random (a
                Poisson process conditioned on ``k``); ``"even"`` spaces them evenly.
                Timer-triggered functions are always spaced evenly (timers are periodic).
            seed: seeds the random placement.
            max_arrivals: refuse to expand more arrivals than this (select first).

        Returns:
            A :class:`Trace` spanning ``minutes * 60`` seconds.

        Raises:
            ConfigError: too many arrivals, or an unknown spread.
        """
        if spread not in ("poisson", "even"):
            raise ConfigError(f"spread must be 'poisson' or 'even', got {spread!r}")
        total = int(self.counts.sum())
        if total > max_arrivals:
            raise ConfigError(
                f"{self.source}: {total} invocations exceed max_arrivals={max_arrivals}; "
                "select fewer functions (top/sample/triggers) first"
            )
        rng = np.random.default_rng(seed)
        minute_starts = np.arange(self.minutes, dtype=np.float64) * 60.0
        arrivals: dict[str, np.ndarray] = {}
        for name, row in zip(self.names, self.counts, strict=True):
            row = row.astype(np.int64)
            n = int(row.sum())
            starts = np.repeat(minute_starts, row)
            is_timer = self.info.get(name, FunctionInfo()).trigger == "timer"
            if spread == "even" or is_timer:
                # k-th of c arrivals in a minute at (k + 0.5) / c of the minute
                first = np.repeat(np.cumsum(row) - row, row)
                rank = np.arange(n) - first
                offsets = (rank + 0.5) / np.repeat(np.maximum(row, 1), row) * 60.0
            else:
                offsets = rng.random(n) * 60.0
            arrivals[name] = np.sort(starts + offsets)
        return Trace(arrivals, self.minutes * 60.0, dict(self.info), self.source)
