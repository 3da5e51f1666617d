"""Warm service times read off live runs: what a call takes under a run's own load.

``aquatope profile`` times each function one call at a time on an idle gateway, with its
sample payloads. A live run's warm stages carry what that misses and the simulator does not
run: the load generator, the gateway and the daemon sharing the host's cores, and the
workflows' real payloads and database. :func:`uncontended_warm` keeps the warm stages whose
time the simulator would *not* stretch by itself, so that taking their durations as the
reference service time counts nothing twice:

* the stage did not start cold and answered 200;
* no other call of the same function overlapped it (the simulator's concurrency scaling and
  queueing account for those);
* at no moment during it were more workflow stages in flight than the host has cores (the
  simulator shares the cores beyond that);
* no replica start overlapped it: neither a cold stage nor a start the timeline shows (a
  start keeps cores busy, which the simulator models apart).

:func:`add_run` takes them from a run's tables, divided by the profile's CPU and memory
scaling at the limits the run gave each function (the profile's ``service_s`` is at no
limit); :func:`testbed.experiment.live_profile.live_samples` reads run directories with it;
:func:`with_warm_service` puts the samples into a profile.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.errors import ConfigError
from testbed.sim.distributions import Distribution
from testbed.sim.profile import Profile

__all__ = [
    "IDLE_BINS_S",
    "LiveSamples",
    "WarmSamples",
    "add_run",
    "fit_idle_scaling",
    "idle_before",
    "uncontended_warm",
    "with_warm_service",
]

# idle time before a call (seconds), binned for the idle-scaling fit
IDLE_BINS_S = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, math.inf)
MIN_PER_BIN = 10  # samples a bin needs to be a row of the table


@dataclass
class WarmSamples:
    """One function's warm durations and how long it had been idle before each (seconds;
    NaN for its first call in a run)."""

    durations_s: list[float] = field(default_factory=list)
    idle_s: list[float] = field(default_factory=list)


@dataclass
class LiveSamples:
    """What live runs say of warm calls: per function, its kept stages (:class:`WarmSamples`,
    durations at no limit); what each warm, successful request spent outside its stages
    (seconds: the client, the gateway's routing, the workflow's orchestration); and where
    they came from (runs read, stages seen and kept)."""

    functions: dict[str, WarmSamples] = field(default_factory=dict)
    gateway_overhead_s: list[float] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def _max_in_flight(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For each interval ``[start, end)``, the most intervals in flight at once during it
    (itself included); 0 for an empty interval."""
    n = start.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    times = np.concatenate([start, end])
    delta = np.concatenate([np.ones(n, dtype=np.int64), -np.ones(n, dtype=np.int64)])
    order = np.lexsort((delta, times))  # at equal times an end goes before a start
    t, level = times[order], np.cumsum(delta[order])
    lo = np.searchsorted(t, start, side="left")
    hi = np.searchsorted(t, end, side="left")
    ok = hi > lo
    out = np.zeros(n, dtype=np.int64)
    if ok.any():
        pairs = np.column_stack([lo[ok], hi[ok]]).ravel()
        out[ok] = np.maximum.reduceat(level, pairs)[::2]
    return out


def _overlaps_any(start: np.ndarray, end: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether each ``(start, end)`` overlaps any interval ``(lo, hi)``."""
    if lo.size == 0:
        return np.zeros(start.size, dtype=bool)
    began = np.searchsorted(np.sort(lo), end, side="left")  # intervals starting before the end
    ended = np.searchsorted(np.sort(hi), start, side="right")  # ... of which ended before start
    overlapping: np.ndarray = began - ended > 0
    return overlapping


def uncontended_warm(
    stages: pd.DataFrame, *, host_cores: float, timeline: pd.DataFrame | None = None
) -> np.ndarray:
    """A mask over ``stages`` (``stages.csv`` of one run): the warm stages whose duration
    the simulator would take as it is (see the module docstring).

    Args:
        stages: one run's stages (``function``, ``start_s``, ``end_s``, ``cold_start``,
            ``status``).
        host_cores: cores of the host the run was on.
        timeline: the run's timeline (``t_s``, ``replicas_starting``); a stage within one
            sample of a row with a replica starting is left out.
    """
    if stages.empty:
        return np.zeros(0, dtype=bool)
    start = stages["start_s"].to_numpy(dtype=np.float64)
    end = stages["end_s"].to_numpy(dtype=np.float64)
    cold = stages["cold_start"].astype(bool).to_numpy()
    ok = (~cold) & (stages["status"].to_numpy() == 200) & np.isfinite(start) & (end > start)
    ok &= _max_in_flight(start, end) <= max(1, int(host_cores))
    ok &= ~_overlaps_any(start, end, start[cold], end[cold])
    for _fn, rows in stages.groupby("function", sort=False).indices.items():
        ok[rows] &= _max_in_flight(start[rows], end[rows]) <= 1
    if timeline is not None and not timeline.empty:
        t = np.unique(timeline["t_s"].to_numpy(dtype=np.float64))
        step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
        busy = timeline.loc[timeline["replicas_starting"] > 0, "t_s"].to_numpy(dtype=np.float64)
        ok &= ~_overlaps_any(start - step, end + step, busy, busy)
    mask: np.ndarray = ok
    return mask


def idle_before(stages: pd.DataFrame) -> np.ndarray:
    """For each stage, how long its function had been without a call in flight before it
    started (seconds; NaN for the function's first call). A function with several replicas
    reads as less idle than each replica was."""
    idle = np.full(len(stages), np.nan)
    start = stages["start_s"].to_numpy(dtype=np.float64)
    end = stages["end_s"].to_numpy(dtype=np.float64)
    for _fn, rows in stages.groupby("function", sort=False).indices.items():
        order = rows[np.argsort(start[rows], kind="stable")]
        last_end = np.maximum.accumulate(end[order])
        idle[order[1:]] = np.maximum(start[order[1:]] - last_end[:-1], 0.0)
    return idle


def fit_idle_scaling(
    durations_s: np.ndarray, idle_s: np.ndarray, *, min_per_bin: int = MIN_PER_BIN
) -> tuple[tuple[float, float], ...]:
    """``[(idle seconds, factor), ...]``: the median duration per bin of
    :data:`IDLE_BINS_S` (placed at the bin's median idle time) over that of the least idle
    bin with ``min_per_bin`` samples; empty when fewer than two bins have that many."""
    ok = np.isfinite(idle_s) & np.isfinite(durations_s)
    d, g = durations_s[ok], idle_s[ok]
    rows: list[tuple[float, float]] = []
    for lo, hi in itertools.pairwise(IDLE_BINS_S):
        inside = (g >= lo) & (g < hi)
        if inside.sum() >= min_per_bin:
            rows.append((max(float(np.median(g[inside])), 1e-3), float(np.median(d[inside]))))
    if len(rows) < 2:
        return ()
    reference = rows[0][1]
    table = [(round(level, 4), round(median / reference, 4)) for level, median in rows]
    levels = [level for level, _ in table]
    if len(set(levels)) != len(levels):
        return ()
    return tuple(table)


def _limits(timeline: pd.DataFrame) -> dict[str, tuple[float | None, float | None]]:
    """Per function, the CPU cores and memory MB it ran at most of the run."""
    out: dict[str, tuple[float | None, float | None]] = {}
    if timeline.empty:
        return out
    for fn, rows in timeline.groupby("function"):
        cpu = rows["cpu_cores"].dropna()
        mem = rows["memory_mb"].dropna()
        out[str(fn)] = (
            float(cpu.mode().iloc[0]) if not cpu.empty else None,
            float(mem.mode().iloc[0]) if not mem.empty else None,
        )
    return out


def add_run(
    into: LiveSamples,
    stages: pd.DataFrame,
    requests: pd.DataFrame,
    timeline: pd.DataFrame,
    profile: Profile,
    *,
    host_cores: float,
) -> None:
    """Add one live run's tables (``stages.csv``, ``requests.csv``, ``timeline.csv``) to
    ``into``: its uncontended warm stages, each divided by ``profile``'s CPU and memory
    factor at the limits the run gave the function (a function the profile lacks keeps its
    durations), with the idle time before each; its requests' overheads; and the stages
    seen per function (``facts["stages"]``)."""
    keep = uncontended_warm(stages, host_cores=host_cores, timeline=timeline)
    idle = idle_before(stages)
    limits = _limits(timeline)
    seen: dict[str, int] = into.facts.setdefault("stages", {})
    durations_all = stages["duration_s"].to_numpy(dtype=np.float64)
    for fn, rows in stages.groupby("function").indices.items():
        name = str(fn)
        seen[name] = seen.get(name, 0) + len(rows)
        kept = rows[keep[rows]]
        if not kept.size:
            continue
        factor = 1.0
        if name in profile.functions:
            factor = profile.functions[name].service_factor(*limits.get(name, (None, None)))
        warm = into.functions.setdefault(name, WarmSamples())
        warm.durations_s.extend((durations_all[kept] / factor).tolist())
        warm.idle_s.extend(idle[kept].tolist())
    into.gateway_overhead_s.extend(_request_overheads(requests, stages).tolist())


def _request_overheads(requests: pd.DataFrame, stages: pd.DataFrame) -> np.ndarray:
    """Per warm workflow request that succeeded: its latency outside its stages (from the
    client's send to the first stage's start, and from the last stage's end to the
    client's receipt)."""
    ok = requests[requests["ok"].astype(bool) & (requests["cold_stages"] == 0)]
    if ok.empty or stages.empty:
        return np.zeros(0)
    span = stages.groupby("request_id").agg(first=("start_s", "min"), last=("end_s", "max"))
    joined = ok.join(span, on="request_id", how="inner")
    outside = (joined["first"] - joined["sent_s"]) + (joined["end_s"] - joined["last"])
    values: np.ndarray = outside.to_numpy(dtype=np.float64)
    kept: np.ndarray = values[np.isfinite(values) & (values >= 0)]
    return kept


def with_warm_service(
    profile: Profile, live: LiveSamples, *, min_samples: int = 20, idle: bool = True
) -> Profile:
    """``profile`` with each function's ``service_s`` replaced by its live warm samples.

    With ``idle`` a function whose samples fill two idle bins or more also gets an
    ``idle_scaling`` table (:func:`fit_idle_scaling`) and its samples are divided by their
    factor, so ``service_s`` is the least idle reference; its first call in a run (idle
    unknown) is left out then. Functions with fewer than ``min_samples`` keep the profile's
    (named in the provenance under ``warm_service.kept_from_profile``). At least
    ``min_samples`` request overheads replace the gateway overhead too.
    """
    if min_samples < 1:
        raise ConfigError(f"min_samples must be >= 1, got {min_samples}")
    functions = dict(profile.functions)
    replaced: dict[str, int] = {}
    idle_tables: dict[str, list[list[float]]] = {}
    for name, warm in live.functions.items():
        durations = np.asarray(warm.durations_s, dtype=np.float64)
        if name not in functions or durations.size < min_samples:
            continue
        table: tuple[tuple[float, float], ...] = ()
        if idle:
            idle_s = np.asarray(warm.idle_s, dtype=np.float64)
            table = fit_idle_scaling(durations, idle_s)
            if table:
                known = np.isfinite(idle_s)
                scaled = replace(functions[name], idle_scaling=table)
                factors = np.array([scaled.idle_factor(g) for g in idle_s[known]])
                durations = durations[known] / factors
                idle_tables[name] = [list(row) for row in table]
        functions[name] = replace(
            functions[name],
            service_s=Distribution.empirical([round(float(v), 6) for v in durations]),
            idle_scaling=table,
        )
        replaced[name] = int(durations.size)
    overhead = profile.gateway_overhead_s
    if len(live.gateway_overhead_s) >= min_samples:
        overhead = Distribution.empirical([round(float(v), 6) for v in live.gateway_overhead_s])
    provenance = dict(profile.provenance)
    provenance["warm_service"] = {
        "method": "warm stages of live runs, uncontended in the simulator's terms "
        "(testbed.sim.warm_samples)",
        "replaced": replaced,
        "idle_scaling": idle_tables,
        "kept_from_profile": sorted(set(functions) - set(replaced)),
        "gateway_overhead_samples": len(live.gateway_overhead_s)
        if overhead is not profile.gateway_overhead_s
        else 0,
        "min_samples": min_samples,
        **live.facts,
    }
    return Profile(functions, overhead, provenance)
