"""Cost of one ``aquatope-prewarm`` decision on a demo-sized platform (decide() alone).

Replays ``--ticks`` one-second observations for every function of the shipped workflows
(13 functions, both workflows' DAGs): bursty Poisson arrivals (11 ticks on at 1 per tick,
11 off at 0.05), ``step_s=2`` as in ``experiments/demo.yaml``, the GP forecaster. Reports
the median, p95 and worst tick, the ticks that ran a GP fit, and the first tick (library
load and warm-up) separately.

Usage: ``.venv/bin/python bench/prewarm_tick_cost.py [--ticks 120] [--step-s 2]``. Prints
human-readable lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, machine

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Replay the ticks and print the decide-time figures."""
    from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
    from scheduler.policy import FunctionObservation, Observation
    from testbed.core.workflows import default_workflows_dir, load_workflows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--step-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    workflows = dict(load_workflows(default_workflows_dir()).workflows)
    names = sorted({f for wf in workflows.values() for f in wf.functions})
    rng = np.random.default_rng(0)
    policy = AquatopePrewarmPolicy(step_s=args.step_s)
    times_ms: list[float] = []
    fitted: list[bool] = []
    for t in range(1, args.ticks + 1):
        on = (t // 11) % 2 == 1
        fns = {}
        for f in names:
            n = int(rng.poisson(1.0 if on else 0.05))
            fns[f] = FunctionObservation(
                name=f,
                arrivals=n,
                completions=n,
                mean_service_s=0.05 if n else None,
                replicas_ready=1,
                replicas_starting=1 if t % 17 == 0 else 0,
                max_replicas=10,
            )
        obs = Observation(now_s=float(t), tick_s=1.0, functions=fns, workflows=workflows)
        before = [policy._fns[f].last_fit_s if f in policy._fns else None for f in names]
        t0 = time.perf_counter()
        policy.decide(obs)
        times_ms.append(1000 * (time.perf_counter() - t0))
        after = [policy._fns[f].last_fit_s for f in names]
        fitted.append(before != after)
    rest = times_ms[1:]
    fit_ticks = [v for v, f in zip(rest, fitted[1:], strict=True) if f]
    other = [v for v, f in zip(rest, fitted[1:], strict=True) if not f]
    figures = {
        "machine": machine(),
        "functions": len(names),
        "ticks": args.ticks,
        "first_tick_ms": round(times_ms[0], 1),
        "median_ms": round(statistics.median(rest), 2),
        "p95_ms": round(float(np.percentile(rest, 95)), 1),
        "max_ms": round(max(rest), 1),
        "fit_ticks": len(fit_ticks),
        "fit_tick_ms_median": round(statistics.median(fit_ticks), 1) if fit_ticks else None,
        "other_tick_ms_median": round(statistics.median(other), 2) if other else None,
    }
    print(
        f"{len(names)} functions, {args.ticks} ticks: median {figures['median_ms']} ms, "
        f"p95 {figures['p95_ms']} ms, max {figures['max_ms']} ms; "
        f"{len(fit_ticks)} fit ticks (median {figures['fit_tick_ms_median']} ms); "
        f"first tick {figures['first_tick_ms']} ms"
    )
    emit(figures)


if __name__ == "__main__":
    main()
