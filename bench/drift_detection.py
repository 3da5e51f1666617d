"""The configurator's load drift detector against the rule it replaced, on the same windows.

Per scenario and seed: Poisson arrivals (with or without bursts) binned into 30 s windows,
a reference of ``--reference`` windows (a tuning episode: 15 by default, 7.5 minutes),
``--hours`` of the same load (every alarm there is a false one; the detector starts over
after each), then the load times a factor (the first alarm there is the detection). Two
detectors see the same windows:

* ``load-shift``: :class:`~scheduler.configure.drift.LoadShiftDetector` (the mixture of the
  reference's rates, a doubling or halving against it, in nats), as ``aquatope-config``
  runs it;
* ``cusum``: the previous rule, a CUSUM of ``log1p(rate)`` standardised by the reference's
  mean and spread (slack 0.5, alarm at 8 standard deviations).

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench._common import emit, machine
from scheduler.configure.drift import CusumDetector, LoadShiftDetector

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
    "rare-bursts-doubled": (Load(burst_calls=300, period_s=600), 2.0),  # rarer than the reference
}


def _counts(load: Load, rng: np.random.Generator, start: float, windows: int, scale: float):
    end = start + windows * WINDOW_S
    edges = start + WINDOW_S * np.arange(windows + 1)
    return np.histogram(load.arrivals(rng, start, end, scale), edges)[0].astype(float)


def _detector(kind: str, reference: np.ndarray) -> Callable[[float], bool]:
    if kind == "load-shift":
        shift = LoadShiftDetector()
        shift.prime([(n, WINDOW_S) for n in reference])

        def feed_shift(n: float) -> bool:
            if shift.update(n, WINDOW_S):
                shift.high = shift.low = 0.0
                return True
            return False

        return feed_shift
    cusum = CusumDetector(reference=4, drift=0.5, threshold=8.0)
    cusum.prime([math.log1p(n / WINDOW_S) for n in reference])

    def feed_cusum(n: float) -> bool:
        if cusum.update(math.log1p(n / WINDOW_S)):
            cusum.high = cusum.low = 0.0
            return True
        return False

    return feed_cusum


def one_run(kind: str, load: Load, factor: float, seed: int, args: argparse.Namespace):
    """(false alarms, minutes to detect the change or None) of one seed."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, load.period_s)  # the episode starts anywhere in the burst cycle
    steady = int(args.hours * 3600 / WINDOW_S)
    after = int(args.after_min * 60 / WINDOW_S)
    reference = _counts(load, rng, start, args.reference, 1.0)
    same = _counts(load, rng, start + args.reference * WINDOW_S, steady, 1.0)
    changed = _counts(load, rng, start + (args.reference + steady) * WINDOW_S, after, factor)
    feed = _detector(kind, reference)
    false_alarms = sum(feed(n) for n in same)
    lag = next((i + 1 for i, n in enumerate(changed) if feed(n)), None)
    return false_alarms, None if lag is None else lag * WINDOW_S / 60.0


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
    for name, (load, factor) in SCENARIOS.items():
        for kind in ("load-shift", "cusum"):
            runs = [one_run(kind, load, factor, s, args) for s in range(args.seeds)]
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
                f"{name:20s} {kind:10s} false alarms {row['false_alarms_per_100h']:6.1f}/100 h, "
                f"detected {row['detected']}, lag median {row['lag_min_median']} max "
                f"{row['lag_min_max']} min",
                file=sys.stderr,
            )
            emit(row)


if __name__ == "__main__":
    main()
