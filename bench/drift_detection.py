"""The configurator's drift detectors against the rule they replaced, on the same windows.

Load, per scenario and seed: Poisson arrivals (with or without bursts) binned into 30 s
windows, a reference of ``--reference`` windows (a tuning episode: 15 by default, 7.5
minutes), ``--hours`` of the same load (every alarm there is a false one; the detector starts
over after each), then the load times a factor (the first alarm there is the detection).
Latency, the same with windows' tail latencies (about 0.4 s, 10 % noise, every sixth window
3x slower in the bursty scenarios) and a reference of 4 windows, as the policy takes at its
kept configuration. Two detectors see the same windows:

* ``shift``: :class:`~scheduler.configure.drift.LoadShiftDetector` (the mixture of the
  reference's rates, doubled or halved against it) or
  :class:`~scheduler.configure.drift.LatencyShiftDetector` (a kernel density of the
  reference's log tails, 1.5x slower or faster), as ``aquatope-config`` runs them;
* ``cusum``: the previous rule, a CUSUM of ``log1p(rate)`` or of the log tail standardised
  by the reference's mean and spread (slack 0.5, alarm at 8 standard deviations).

Prints one JSON line per scenario and detector: false alarms per 100 hours, how many runs
detected the change within ``--after-min`` minutes, and the minutes it took (median, max).

Usage: ``python bench/drift_detection.py [--seeds 20] [--hours 8] [--reference 15]``
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench._common import emit, machine
from scheduler.configure.drift import CusumDetector, LatencyShiftDetector, LoadShiftDetector

WINDOW_S = 30.0


@dataclass(frozen=True)
class Load:
    """Poisson background plus a burst of ``burst_calls`` in ``burst_s`` every ``period_s``."""

    background_per_s: float = 1.0
    burst_calls: float = 120.0
    burst_s: float = 20.0
    period_s: float = 180.0

    def arrivals(self, rng: np.random.Generator, start: float, end: float, scale: float):
        parts = [
            rng.uniform(start, end, rng.poisson(self.background_per_s * scale * (end - start)))
        ]
        if self.burst_calls > 0:
            first = math.floor(start / self.period_s) * self.period_s + self.period_s / 3
            for at in np.arange(first, end, self.period_s):
                calls = rng.poisson(self.burst_calls * scale)
                parts.append(at + rng.uniform(0, self.burst_s, calls))
        times = np.concatenate(parts)
        return times[(times >= start) & (times < end)]


SCENARIOS: dict[str, tuple[Load, float]] = {
    "bursty-doubled": (Load(), 2.0),
    "bursty-halved": (Load(), 0.5),
    "bursty-x1.5": (Load(), 1.5),
    "poisson-doubled": (Load(burst_calls=0), 2.0),
    "quiet-doubled": (Load(background_per_s=0.05, burst_calls=0), 2.0),  # 1.5 per window
    "rare-bursts-doubled": (Load(burst_calls=300, period_s=600), 2.0),  # a 10-min cycle
}


# latency: (share of windows 3x slower, the change's factor)
LATENCY_SCENARIOS: dict[str, tuple[float, float]] = {
    "latency-steady-x1.6": (0.0, 1.6),
    "latency-bursty-x1.6": (1 / 6, 1.6),
    "latency-bursty-x0.6": (1 / 6, 0.6),
}


def _tails(rng: np.random.Generator, n: int, burst_share: float, scale: float) -> np.ndarray:
    out = 0.4 * scale * np.exp(rng.normal(0.0, 0.1, n))
    out[rng.random(n) < burst_share] *= 3.0
    return out


def _restarting(detector: Any, signal: Callable[[float], tuple[float, ...]]):
    """Feeds ``detector.update(*signal(x))``; after an alarm its sums start over."""

    def feed(x: float) -> bool:
        if detector.update(*signal(x)):
            detector.restart()
            return True
        return False

    return feed


def _score(feed: Callable[[float], bool], same: np.ndarray, changed: np.ndarray):
    """(false alarms on ``same``, minutes into ``changed`` to the first alarm or None)."""
    false_alarms = sum(feed(float(x)) for x in same)
    lag = next((i + 1 for i, x in enumerate(changed) if feed(float(x))), None)
    return false_alarms, None if lag is None else lag * WINDOW_S / 60.0


def one_latency_run(kind: str, burst_share: float, factor: float, seed: int, args):
    """(false alarms, minutes to detect the change or None) of one seed."""
    rng = np.random.default_rng(seed)
    steady = int(args.hours * 3600 / WINDOW_S)
    after = int(args.after_min * 60 / WINDOW_S)
    reference = _tails(rng, 4, 0.0, 1.0)  # the kept configuration's first windows
    same = _tails(rng, steady, burst_share, 1.0)
    changed = _tails(rng, after, burst_share, factor)
    if kind == "shift":
        shift = LatencyShiftDetector(reference=4)
        shift.prime(reference.tolist())
        feed = _restarting(shift, lambda x: (x,))
    else:
        cusum = CusumDetector(reference=4, drift=0.5, threshold=8.0)
        cusum.prime(np.log(reference).tolist())
        feed = _restarting(cusum, lambda x: (math.log(x),))
    return _score(feed, same, changed)


def _counts(load: Load, rng: np.random.Generator, start: float, windows: int, scale: float):
    end = start + windows * WINDOW_S
    edges = start + WINDOW_S * np.arange(windows + 1)
    return np.histogram(load.arrivals(rng, start, end, scale), edges)[0].astype(float)


def one_run(kind: str, load: Load, factor: float, seed: int, args: argparse.Namespace):
    """(false alarms, minutes to detect the change or None) of one seed."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, load.period_s)  # the episode starts anywhere in the burst cycle
    steady = int(args.hours * 3600 / WINDOW_S)
    after = int(args.after_min * 60 / WINDOW_S)
    reference = _counts(load, rng, start, args.reference, 1.0)
    same = _counts(load, rng, start + args.reference * WINDOW_S, steady, 1.0)
    changed = _counts(load, rng, start + (args.reference + steady) * WINDOW_S, after, factor)
    if kind == "shift":
        shift = LoadShiftDetector()
        shift.prime([(n, WINDOW_S) for n in reference])
        feed = _restarting(shift, lambda n: (n, WINDOW_S))
    else:
        cusum = CusumDetector(reference=4, drift=0.5, threshold=8.0)
        cusum.prime([math.log1p(n / WINDOW_S) for n in reference])
        feed = _restarting(cusum, lambda n: (math.log1p(n / WINDOW_S),))
    return _score(feed, same, changed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hours", type=float, default=8.0, help="steady load after the reference")
    ap.add_argument("--reference", type=int, default=15, help="reference windows (30 s each)")
    ap.add_argument(
        "--after-min", type=float, default=20.0, help="minutes watched after the change"
    )
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.hours <= 0 or args.reference < 4 or args.after_min <= 0:
        ap.error("need --seeds >= 1, --hours > 0, --reference >= 4, --after-min > 0")
    cases: list[tuple[str, float, Callable[[str, int], tuple[int, float | None]]]] = [
        (name, factor, partial(_load_case, load, factor, args))
        for name, (load, factor) in SCENARIOS.items()
    ]
    cases += [
        (name, factor, partial(_latency_case, share, factor, args))
        for name, (share, factor) in LATENCY_SCENARIOS.items()
    ]
    for name, factor, run in cases:
        for kind in ("shift", "cusum"):
            runs = [run(kind, s) for s in range(args.seeds)]
            lags = [lag for _, lag in runs if lag is not None]
            false_per_100h = sum(f for f, _ in runs) / (args.seeds * args.hours) * 100
            row = {
                "bench": "drift_detection",
                "scenario": name,
                "detector": kind,
                "factor": factor,
                "seeds": args.seeds,
                "false_alarms_per_100h": round(false_per_100h, 1),
                "detected": f"{len(lags)}/{args.seeds}",
                "lag_min_median": round(float(np.median(lags)), 1) if lags else None,
                "lag_min_max": round(max(lags), 1) if lags else None,
                "machine": machine(),
            }
            print(
                f"{name:20s} {kind:6s} false alarms {row['false_alarms_per_100h']:6.1f}/100 h, "
                f"detected {row['detected']}, lag median {row['lag_min_median']} max "
                f"{row['lag_min_max']} min",
                file=sys.stderr,
            )
            emit(row)


def _load_case(load: Load, factor: float, args: argparse.Namespace, kind: str, seed: int):
    return one_run(kind, load, factor, seed, args)


def _latency_case(share: float, factor: float, args: argparse.Namespace, kind: str, seed: int):
    return one_latency_run(kind, share, factor, seed, args)


if __name__ == "__main__":
    main()
