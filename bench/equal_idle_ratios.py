"""Cold starts and QoS violations of each baseline over each Aquatope point that idles no more.

Reads the runs of an evaluation grid (``aquatope evaluate``'s ``-o`` directory) for one trace
and pairs, for every Aquatope point, each competitor point whose mean idle replica-seconds
are at least the Aquatope point's: the ratio of mean cold-start (and QoS-violation)
percentages, baseline over Aquatope, with a paired 95 % bootstrap interval over the seeds
both have (``--floor`` percentage points added to both means so zero stays finite). Issue
#20's goal on predictable traces: >= 5x against keep-alive and >= 2x against
hybrid-histogram at equal or lower idle, with the interval's low end.

Usage: ``.venv/bin/python bench/equal_idle_ratios.py --trace timers
[--results results/evaluation] [--floor 0.05]``. One JSON object per pair.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from testbed.report.compare import load_metrics
from testbed.report.evaluation import bootstrap_ratio, is_aquatope, is_competitor
from testbed.report.metrics import RunMetrics


def _family(label: str) -> str:
    """Competitor test on the label's leading words (oracle and ablations excluded)."""
    return "oracle" if label.startswith("oracle") else label


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", required=True, help="trace name (a folder of --results)")
    parser.add_argument("--results", type=Path, default=Path("results/evaluation"))
    parser.add_argument("--floor", type=float, default=0.05, help="percentage points")
    args = parser.parse_args(argv)
    root = args.results / args.trace
    if not root.is_dir():
        parser.error(f"{root}: no such results folder (run aquatope evaluate first)")
    by_label: dict[str, dict[int, RunMetrics]] = defaultdict(dict)
    for m in load_metrics([root]):
        by_label[m.label][m.seed] = m

    def series(label: str, what: str) -> dict[int, float]:
        runs = by_label[label].items()
        if what == "idle":
            return {s: m.cost.idle_replica_s for s, m in runs}
        rate = "cold_start_rate" if what == "cold" else "qos_violation_rate"
        return {s: 100.0 * getattr(m, rate) for s, m in runs}

    def idle(label: str) -> float:
        return float(np.mean(list(series(label, "idle").values())))

    ours = sorted((lb for lb in by_label if is_aquatope(lb)), key=idle)
    rivals = [lb for lb in by_label if is_competitor(_family(lb))]
    for mine in ours:
        for rival in sorted(rivals, key=idle):
            if idle(rival) < idle(mine):
                continue
            row: dict[str, object] = {
                "trace": args.trace,
                "aquatope": mine,
                "aquatope_idle_replica_s": round(idle(mine)),
                "baseline": rival,
                "baseline_idle_replica_s": round(idle(rival)),
            }
            for what in ("cold", "viol"):
                ratio, low, high = bootstrap_ratio(
                    series(rival, what), series(mine, what), floor=args.floor
                )
                row[f"{what}_ratio"] = [round(ratio, 2), round(low, 2), round(high, 2)]
            print(json.dumps(row))


if __name__ == "__main__":
    main()
