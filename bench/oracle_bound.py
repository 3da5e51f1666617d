"""Does any policy beat the oracle? Per trace and seed of an evaluation's runs, how far each
policy point lies below the oracle's frontier (cold starts and QoS violations against idle
replica-seconds; the frontier is the lower envelope of the oracle's budget sweep, linear
between its points, as in the summary's gap tables).

A positive figure is a policy doing better than the bound at its idle time: the bound is a
model's (mean service times, the profile's starts), so small excursions say where the model
is loose; large ones would say the oracle is no bound there.

Usage: ``python bench/oracle_bound.py results/evaluation [--seeds N] [--oracle PREFIX]``;
the last line is JSON (per trace: the largest excursion in points, and which run).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit
from testbed.report.compare import load_metrics
from testbed.report.frontier import envelope_at
from testbed.report.metrics import RunMetrics


def _cold_pct(m: RunMetrics) -> float:
    return 100.0 * m.cold_start_rate


def _qos_pct(m: RunMetrics) -> float:
    return 100.0 * m.qos_violation_rate


METRICS: dict[str, Callable[[RunMetrics], float]] = {"cold_pct": _cold_pct, "qos_pct": _qos_pct}


def worst_below(runs: list[RunMetrics], oracle_prefix: str) -> dict[str, dict[str, object]]:
    """Per metric, the largest margin by which a non-oracle run of one seed lies below that
    seed's oracle frontier (0 when none does), and the run."""
    by_seed: dict[int, list[RunMetrics]] = defaultdict(list)
    for m in runs:
        by_seed[m.seed].append(m)
    out: dict[str, dict[str, object]] = {}
    for key, value in METRICS.items():
        worst: dict[str, object] = {"points": 0.0, "run": None}
        for seed, seed_runs in sorted(by_seed.items()):
            oracle = [m for m in seed_runs if m.label.startswith(oracle_prefix)]
            frontier = [(m.cost.idle_replica_s, value(m)) for m in oracle]
            for m in seed_runs:
                if m.label.startswith("oracle"):
                    continue
                bound = envelope_at(frontier, m.cost.idle_replica_s)
                if bound is None:
                    continue
                below = bound - value(m)
                if below > float(worst["points"]):  # type: ignore[arg-type]
                    worst = {
                        "points": round(below, 3),
                        "run": f"{m.label} seed {seed}: {value(m):.2f} % at "
                        f"{m.cost.idle_replica_s:.0f} idle replica-s (bound {bound:.2f} %)",
                    }
        out[key] = worst
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an evaluation's -o directory")
    parser.add_argument("--seeds", type=int, default=None, help="only seeds below this")
    parser.add_argument(
        "--oracle", default="oracle-idle-budget", help="label prefix of the oracle's sweep"
    )
    args = parser.parse_args()
    if not args.results.is_dir():
        parser.error(f"{args.results}: not a directory")
    figures: dict[str, object] = {}
    for trace in sorted(p for p in args.results.iterdir() if p.is_dir()):
        runs = [m for m in load_metrics([trace]) if args.seeds is None or m.seed < args.seeds]
        result = worst_below(runs, args.oracle)
        for key, worst in result.items():
            print(f"{trace.name}: {key} at most {worst['points']} points below ({worst['run']})")
        figures[trace.name] = {k: w["points"] for k, w in result.items()}
    emit({"bench": "oracle_bound", "worst_points_below": figures})


if __name__ == "__main__":
    main()
