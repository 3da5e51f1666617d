"""The one trace type: per-function arrival times (seconds) over a time window.

Readers (:mod:`loadgen.traces`) and generators all produce a :class:`Trace`. Transformations
(selection, time compression, rate scaling, windowing) return new traces; nothing mutates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from testbed.core.errors import ConfigError

__all__ = ["FunctionInfo", "FunctionSummary", "Trace"]


@dataclass(frozen=True)
class FunctionInfo:
    """What a trace knows about one function besides its arrivals.

    Attributes:
        owner: owner hash (Azure) or "" when unknown.
        app: application hash (Azure) or "".
        trigger: trigger type (``http``, ``queue``, ``event``, ``timer``, ``orchestration``,
            ``storage``, ``others``) or "" when unknown.
        avg_duration_s: mean execution time, when a durations file gave it.
        memory_mb: mean allocated memory of the function's application, when known.
    """

    owner: str = ""
    app: str = ""
    trigger: str = ""
    avg_duration_s: float | None = None
    memory_mb: float | None = None


@dataclass(frozen=True)
class FunctionSummary:
    """Shape statistics of one function's arrivals (see :meth:`Trace.summary`).

    Attributes:
        name: function name.
        count: number of arrivals.
        rate_per_min: mean arrivals per minute over the window.
        idle_p50_s, idle_p90_s, idle_p99_s: percentiles of gaps between arrivals (NaN if < 2).
        cv: coefficient of variation of inter-arrival times (1 for Poisson; NaN if < 3).
        trigger: trigger type or "".
    """

    name: str
    count: int
    rate_per_min: float
    idle_p50_s: float
    idle_p90_s: float
    idle_p99_s: float
    cv: float
    trigger: str


@dataclass(frozen=True)
class Trace:
    """Per-function arrival times in seconds from the window's start.

    Attributes:
        arrivals_s: function name -> sorted float64 array of shape ``(n,)``, values in
            ``[0, duration_s)``.
        duration_s: window length in seconds.
        info: function name -> :class:`FunctionInfo` (missing names mean "unknown").
        source: a short description of where the trace came from.
    """

    arrivals_s: Mapping[str, np.ndarray]
    duration_s: float
    info: Mapping[str, FunctionInfo] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ConfigError(f"trace duration must be positive, got {self.duration_s!r}")
        clean: dict[str, np.ndarray] = {}
        for name, times in self.arrivals_s.items():
            arr = np.asarray(times, dtype=np.float64).ravel()
            if arr.size and (arr.min() < 0 or arr.max() >= self.duration_s):
                raise ConfigError(
                    f"trace function {name!r}: arrivals must lie in [0, {self.duration_s})"
                )
            if arr.size > 1 and np.any(np.diff(arr) < 0):
                arr = np.sort(arr)
            arr.setflags(write=False)
            clean[name] = arr
        object.__setattr__(self, "arrivals_s", clean)

    # -- queries -------------------------------------------------------------------------
    @property
    def functions(self) -> tuple[str, ...]:
        """Function names, in insertion order."""
        return tuple(self.arrivals_s)

    @property
    def total(self) -> int:
        """Total number of arrivals over all functions."""
        return int(sum(a.size for a in self.arrivals_s.values()))

    def counts(self) -> dict[str, int]:
        """Arrivals per function."""
        return {name: int(a.size) for name, a in self.arrivals_s.items()}

    def rate_per_s(self, name: str | None = None) -> float:
        """Mean arrival rate of one function (or of all) in requests per second."""
        n = self.total if name is None else int(self.arrivals_s[name].size)
        return n / self.duration_s

    def by_rate(self) -> list[str]:
        """Function names sorted by arrival count, highest first (ties by name)."""
        return sorted(self.arrivals_s, key=lambda n: (-self.arrivals_s[n].size, n))

    def binned(self, bin_s: float = 60.0) -> dict[str, np.ndarray]:
        """Per-function arrival counts per bin of ``bin_s`` seconds; arrays of shape ``(bins,)``."""
        if not bin_s > 0:
            raise ConfigError(f"bin_s must be positive, got {bin_s!r}")
        bins = max(1, math.ceil(self.duration_s / bin_s - 1e-9))
        edges = np.arange(bins + 1, dtype=np.float64) * bin_s
        return {n: np.histogram(a, bins=edges)[0] for n, a in self.arrivals_s.items()}

    def summary(self) -> list[FunctionSummary]:
        """Per-function rate, idle-time percentiles and inter-arrival CV, busiest first."""
        rows = []
        for name in self.by_rate():
            times = self.arrivals_s[name]
            gaps = np.diff(times)
            if gaps.size:
                p50, p90, p99 = (float(x) for x in np.percentile(gaps, [50, 90, 99]))
            else:
                p50 = p90 = p99 = math.nan
            mean_gap = float(gaps.mean()) if gaps.size >= 2 else 0.0
            cv = float(gaps.std() / mean_gap) if gaps.size >= 2 and mean_gap > 0 else math.nan
            rows.append(
                FunctionSummary(
                    name=name,
                    count=int(times.size),
                    rate_per_min=times.size * 60.0 / self.duration_s,
                    idle_p50_s=p50,
                    idle_p90_s=p90,
                    idle_p99_s=p99,
                    cv=cv,
                    trigger=self.info.get(name, FunctionInfo()).trigger,
                )
            )
        return rows

    # -- transformations -----------------------------------------------------------------
    def select(self, names: Iterable[str]) -> Trace:
        """Keep only ``names`` (in that order).

        Raises:
            ConfigError: a name is not in the trace.
        """
        names = list(names)
        missing = [n for n in names if n not in self.arrivals_s]
        if missing:
            raise ConfigError(f"trace has no function(s) {', '.join(map(repr, missing[:5]))}")
        return Trace(
            {n: self.arrivals_s[n] for n in names},
            self.duration_s,
            {n: self.info[n] for n in names if n in self.info},
            self.source,
        )

    def top(self, n: int) -> Trace:
        """The ``n`` busiest functions."""
        if n < 1:
            raise ConfigError(f"top needs n >= 1, got {n}")
        return self.select(self.by_rate()[:n])

    def sample(self, n: int, *, seed: int) -> Trace:
        """``n`` functions drawn uniformly without replacement (seeded)."""
        if n < 1:
            raise ConfigError(f"sample needs n >= 1, got {n}")
        names = list(self.arrivals_s)
        if n >= len(names):
            return self
        picked = np.random.default_rng(seed).choice(len(names), size=n, replace=False)
        return self.select(names[i] for i in sorted(picked))

    def with_triggers(self, triggers: Iterable[str]) -> Trace:
        """Keep functions whose trigger is one of ``triggers``."""
        wanted = {t.lower() for t in triggers}
        return self.select(
            n for n in self.arrivals_s if self.info.get(n, FunctionInfo()).trigger in wanted
        )

    def window(self, start_s: float, end_s: float) -> Trace:
        """Arrivals in ``[start_s, end_s)``, shifted so the window starts at 0."""
        end_s = min(end_s, self.duration_s)
        if not 0 <= start_s < end_s:
            raise ConfigError(f"bad trace window [{start_s}, {end_s})")
        cut = {n: a[(a >= start_s) & (a < end_s)] - start_s for n, a in self.arrivals_s.items()}
        return Trace(cut, end_s - start_s, self.info, self.source)

    def compress(self, factor: float) -> Trace:
        """Play the trace ``factor`` times faster (``factor=144``: a day in 10 minutes).

        Rates grow by ``factor``; combine with :meth:`scale_rate` to keep them.
        """
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"compression factor must be positive, got {factor!r}")
        duration = self.duration_s / factor
        squeezed = {
            n: np.minimum(a / factor, np.nextafter(duration, 0)) for n, a in self.arrivals_s.items()
        }
        return Trace(squeezed, duration, self.info, self.source)

    def scale_rate(self, factor: float, *, seed: int, bin_s: float = 1.0) -> Trace:
        """Multiply every function's arrival rate by ``factor`` (seeded).

        ``factor < 1`` thins arrivals (each kept with probability ``factor``; kept ones keep
        their exact times). ``factor > 1`` keeps every arrival and adds, in each ``bin_s``
        bin, ``(factor - 1)`` times its count of extra arrivals (stochastic rounding) spread
        uniformly inside the bin, so the shape survives at the bin's resolution.
        """
        if not (factor >= 0 and math.isfinite(factor)):
            raise ConfigError(f"rate scale must be >= 0, got {factor!r}")
        if factor == 1.0:
            return self
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        for name, times in self.arrivals_s.items():
            if factor < 1:
                out[name] = times[rng.random(times.size) < factor]
                continue
            bins = max(1, math.ceil(self.duration_s / bin_s))
            idx = np.minimum((times // bin_s).astype(np.int64), bins - 1)
            counts = np.bincount(idx, minlength=bins).astype(np.float64) * (factor - 1.0)
            extra = np.floor(counts).astype(np.int64)
            extra += rng.random(bins) < (counts - extra)
            starts = np.repeat(np.arange(bins, dtype=np.float64) * bin_s, extra)
            width = np.repeat(np.minimum(bin_s, self.duration_s - np.arange(bins) * bin_s), extra)
            added = starts + rng.random(starts.size) * width
            added = np.minimum(added, np.nextafter(self.duration_s, 0))
            out[name] = np.sort(np.concatenate([times, added]))
        return Trace(out, self.duration_s, self.info, self.source)

    def rename(self, mapping: Mapping[str, str]) -> Trace:
        """Rename functions (names absent from ``mapping`` stay)."""
        new = {mapping.get(n, n): a for n, a in self.arrivals_s.items()}
        if len(new) != len(self.arrivals_s):
            raise ConfigError("renaming would merge functions")
        info = {mapping.get(n, n): i for n, i in self.info.items()}
        return Trace(new, self.duration_s, info, self.source)
