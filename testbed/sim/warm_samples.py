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

:func:`warm_service_samples` reads them from run directories, divided by the profile's CPU
and memory scaling at the limits the run gave each function (the profile's ``service_s`` is
at no limit), and :func:`with_warm_service` puts them into a profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.errors import ConfigError
from testbed.sim.distributions import Distribution
from testbed.sim.profile import Profile

__all__ = ["uncontended_warm", "warm_service_samples", "with_warm_service"]


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


def warm_service_samples(
    run_dirs: Iterable[str | Path], profile: Profile, *, host_cores: float | None = None
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Reference service times (no limit, one call at a time) from live runs' warm stages.

    Args:
        run_dirs: run directories (or directories holding runs, e.g. an experiment's).
        profile: the profile whose scaling tables turn a duration at the run's limits into
            one at no limit (a function it lacks keeps its durations as they are).
        host_cores: the runs' host cores; default each run's ``meta.json`` (usable cores).

    Returns:
        ``(samples per function, facts)``: the runs read and their backends, stages seen and
        kept per function.

    Raises:
        ConfigError: a directory holds no run, a run is malformed, or a run was simulated
            (its durations are the profile's own).
    """
    from testbed.experiment.results import find_runs, load_run

    samples: dict[str, list[float]] = {}
    seen: dict[str, int] = {}
    runs: list[str] = []
    for path in find_runs(list(run_dirs)):
        run = load_run(path)
        backend = str(run.meta.get("backend", ""))
        if backend == "sim":
            raise ConfigError(f"{path}: a simulated run; warm samples come from live runs only")
        machine = run.meta.get("machine") or {}
        cores = host_cores or machine.get("cores_usable") or machine.get("cores")
        if not cores:
            raise ConfigError(f"{path}/meta.json: no machine cores; give the host's cores")
        stages = run.stages
        keep = uncontended_warm(stages, host_cores=float(cores), timeline=run.timeline)
        limits = _limits(run.timeline)
        for fn, rows in stages.groupby("function").indices.items():
            name = str(fn)
            seen[name] = seen.get(name, 0) + len(rows)
            durations = stages["duration_s"].to_numpy(dtype=np.float64)[rows[keep[rows]]]
            if not durations.size:
                continue
            factor = 1.0
            if name in profile.functions:
                factor = profile.functions[name].service_factor(*limits.get(name, (None, None)))
            samples.setdefault(name, []).extend((durations / factor).tolist())
        runs.append(f"{path} ({backend})")
    facts = {
        "runs": runs,
        "stages": dict(sorted(seen.items())),
        "kept": {fn: len(v) for fn, v in sorted(samples.items())},
    }
    return samples, facts


def with_warm_service(
    profile: Profile,
    samples: Mapping[str, list[float]],
    *,
    min_samples: int = 20,
    facts: Mapping[str, Any] | None = None,
) -> Profile:
    """``profile`` with each function's ``service_s`` replaced by its live warm samples
    (functions with fewer than ``min_samples`` keep the profile's, named in the provenance
    under ``warm_service.kept_from_profile``)."""
    if min_samples < 1:
        raise ConfigError(f"min_samples must be >= 1, got {min_samples}")
    functions = dict(profile.functions)
    replaced: dict[str, int] = {}
    for name, values in samples.items():
        if name in functions and len(values) >= min_samples:
            functions[name] = replace(
                functions[name], service_s=Distribution.empirical([round(v, 6) for v in values])
            )
            replaced[name] = len(values)
    provenance = dict(profile.provenance)
    provenance["warm_service"] = {
        "method": "warm stages of live runs, uncontended in the simulator's terms "
        "(testbed.sim.warm_samples)",
        "replaced": replaced,
        "kept_from_profile": sorted(set(functions) - set(replaced)),
        "min_samples": min_samples,
        **dict(facts or {}),
    }
    return Profile(functions, profile.gateway_overhead_s, provenance)
