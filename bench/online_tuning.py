"""What online tuning costs live traffic: each sizing method run as ``aquatope-config`` on the
simulator, against the same trace with the declared limits left alone.

Per method and seed, one simulated run of the workflow (replicas from ``always-on``, limits
from ``aquatope-config`` with the method) on a bursty trace: 1 request/s of Poisson
background plus a 6 request/s burst of 20 s every 3 minutes, then the rate doubles half-way
(a load change the drift detectors should answer with a new episode). Two scenarios:

* ``honest``: the shipped stack (declared requests), the platform reports each replica's
  peak memory, as the local and docker backends do;
* ``blind``: every function requests only 128 MB and no peak memory is reported (OpenFaaS
  CE's gateway passes none), so trials can put a torch stage under what it uses and only
  the OOM rollback protects the traffic.

Prints one JSON line per scenario and method: the worst 5-minute window's share of requests
that failed or missed the QoS, and the worst excess of a window's share over the same window
of the untuned run (same trace and seed: what tuning caused; the goal is at most 5 %), the
whole run's share, the requests lost (failed; OOM-killed among them), trials and rollbacks,
the cost of the last 5 minutes against the declared limits' (what the kept configuration
saves) and of the whole run (what tuning cost, canaries included), each as a mean with a
95 % t-interval over seeds; the minutes from the doubling to
the re-tuning its drift detectors start (per run) and the drift re-tunings before it (bursts
or noise taken for a change); the ``declared`` line is the same trace untuned.

``--trials in-place,canary`` runs each method both ways: its trials on every replica of the
functions they change (``in-place``, the default) or on one canary replica per changed
function taking at most ``--canary-share`` of its calls (``canary``; labelled
``METHOD@canary``).

Usage: ``python bench/online_tuning.py [--seeds 5] [--minutes 30] [--methods aquatope,random]
[--scenarios honest,blind] [--workflow ml-pipeline] [--trials in-place,canary]
[--canary-share 0.1]``
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from botorch.exceptions.warnings import BotorchWarning

from bench._common import emit, machine
from scheduler.registry import create_policy
from testbed.core.config import Limits
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows
from testbed.experiment.simulate import run_simulation
from testbed.report.compare import t_interval
from testbed.report.cost import compute_cost
from testbed.report.metrics import violation_mask

REPO = Path(__file__).resolve().parents[1]
WINDOW_S = 300.0
METHODS = ("aquatope", "paper-bo", "cherrypick", "power-tuning", "random")
SCENARIOS = ("honest", "blind")


def bursty_then_double(duration_s: float, seed: int) -> np.ndarray:
    """Arrival times: Poisson background plus bursts; every rate doubles half-way."""
    rng = np.random.default_rng(seed)
    half = duration_s / 2
    parts = []
    for start, end, scale in ((0.0, half, 1), (half, duration_s, 2)):
        parts.append(rng.uniform(start, end, int((end - start) * scale)))
        for b in np.arange(start + 60, end, 180):
            parts.append(b + rng.uniform(0, 20, 120 * scale))
    times = np.sort(np.concatenate(parts))
    return times[times < duration_s]


def window_shares(requests: pd.DataFrame) -> pd.Series:
    """Per 5-minute window of intended send time, the share of requests that violated."""
    bad = pd.Series(violation_mask(requests), index=requests.index)
    return bad.groupby((requests["intended_s"] // WINDOW_S).astype(int)).mean()


def one_run(
    workflow: str,
    method: str | None,
    scenario: str,
    seed: int,
    duration_s: float,
    *,
    trials: str = "in-place",
    canary_share: float = 0.1,
) -> dict[str, Any]:
    """One simulated run of ``workflow`` tuned by ``method`` (None: the declared limits),
    its trials ``in-place`` or on ``canary`` replicas."""
    catalog = load_workflows()
    wf = catalog.get(workflow)
    stack = load_stack(REPO / "stack.yml")
    specs = [stack[f] for f in wf.functions]
    blind = scenario == "blind"
    if blind:
        specs = [replace(s, requests=Limits(cpu_cores=0.5, memory_mb=128)) for s in specs]
    if method is None:
        policy = create_policy("always-on")
        config = None
    else:
        options = {
            "config_workflow": workflow,
            "config_method": method,
            "config_seed": seed,
            "config_trials": trials,
            "config_canary_share": canary_share,
        }
        policy = create_policy("sized", {"replicas": "always-on", **options})
        config = policy.config  # type: ignore[attr-defined]
    started = time.process_time()
    results = run_simulation(
        {"report_peak_memory": not blind},
        catalog,
        {workflow: bursty_then_double(duration_s, seed)},
        policy,
        tick_s=1.0,
        seed=seed,
        functions=specs,
        until_s=duration_s,
    )
    req = results.requests
    last = req[req["intended_s"] >= duration_s - WINDOW_S]
    cost = compute_cost(
        results.timeline, start_s=duration_s - WINDOW_S, end_s=duration_s, invocations=len(last)
    )
    # the whole run, trials (and their canaries, extra replicas) included
    whole = compute_cost(results.timeline, start_s=0.0, end_s=duration_s, invocations=len(req))
    failed = req["ok"] != True  # noqa: E712
    half = duration_s / 2
    drifts = [t for t, why in (config.retunes if config is not None else []) if "drift" in why]
    after = [t for t in drifts if t >= half]
    return {
        "windows": window_shares(req),
        "violations": float(violation_mask(req).mean()),
        "failed": int(failed.sum()),
        "oom_failed": int(req["error"].fillna("").str.contains("oom-killed").sum()),
        "trials": config.trials_total if config is not None else 0,
        "rollbacks": config.rollbacks if config is not None else 0,
        # minutes from the doubling to the drift re-tune that follows it; drift re-tunes
        # before it (each a burst or noise taken for a change)
        "retune_lag_min": (after[0] - half) / 60.0 if after else float("nan"),
        "early_retunes": len(drifts) - len(after),
        "last_usd": cost.decoupled_usd,
        "run_usd": whole.decoupled_usd,
        "cpu_s": time.process_time() - started,
    }


def summarise(runs: list[dict[str, Any]], declared: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r, d in zip(runs, declared, strict=True):
        r["worst_window"] = float(r["windows"].max())
        # what tuning added: the same trace and seed untuned, window by window
        r["worst_excess"] = float((r["windows"] - d["windows"]).max())
    keys = ("worst_window", "worst_excess", "violations", "failed", "oom_failed")
    for key in (*keys, "trials", "rollbacks", "early_retunes"):
        est = t_interval(r[key] for r in runs)
        out[key] = {"mean": round(est.mean, 4), "ci95": round(est.half_width, 4)}
    lags = [r["retune_lag_min"] for r in runs if np.isfinite(r["retune_lag_min"])]
    out["retuned_after_change"] = f"{len(lags)}/{len(runs)}"
    out["retune_lag_min"] = [round(x, 1) for x in lags]
    ratio = t_interval(r["last_usd"] / d["last_usd"] for r, d in zip(runs, declared, strict=True))
    out["last5min_cost_vs_declared"] = {
        "mean": round(ratio.mean, 3),
        "ci95": round(ratio.half_width, 3),
    }
    run = t_interval(r["run_usd"] / d["run_usd"] for r, d in zip(runs, declared, strict=True))
    out["run_cost_vs_declared"] = {"mean": round(run.mean, 3), "ci95": round(run.half_width, 3)}
    out["runs_with_a_window_over_5pct"] = sum(r["worst_window"] > 0.05 for r in runs)
    out["runs_with_an_excess_over_5pct"] = sum(r["worst_excess"] > 0.05 for r in runs)
    out["cpu_s_per_run"] = round(float(np.mean([r["cpu_s"] for r in runs])), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--workflow", default="ml-pipeline")
    ap.add_argument("--trials", default="in-place", help="in-place, canary, or both")
    ap.add_argument("--canary-share", type=float, default=0.1)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=BotorchWarning)  # all-infeasible early steps
    methods = [m for m in args.methods.split(",") if m]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := sorted(set(scenarios) - set(SCENARIOS)):
        ap.error(f"--scenarios: unknown {unknown}; known: {', '.join(SCENARIOS)}")
    modes = [m for m in args.trials.split(",") if m]
    if unknown := sorted(set(modes) - {"in-place", "canary"}):
        ap.error(f"--trials: unknown {unknown}; known: in-place, canary")
    if not 0 < args.canary_share <= 1:
        ap.error(f"--canary-share must be in (0, 1], got {args.canary_share}")
    if args.seeds < 2 or args.minutes < 10:
        ap.error("--seeds must be >= 2 and --minutes >= 10 (two 5-minute halves at least)")
    duration_s = args.minutes * 60.0
    seeds = range(args.seeds)
    for scenario in scenarios:
        declared = [one_run(args.workflow, None, scenario, s, duration_s) for s in seeds]
        rows = {"declared": declared}
        for method in methods:
            for mode in modes:
                label = method if mode == "in-place" else f"{method}@{mode}"
                rows[label] = [
                    one_run(
                        args.workflow,
                        method,
                        scenario,
                        s,
                        duration_s,
                        trials=mode,
                        canary_share=args.canary_share,
                    )
                    for s in seeds
                ]
        for label, runs in rows.items():
            figures = summarise(runs, declared)
            print(
                f"{scenario:7s} {label:13s} worst 5-min window "
                f"{figures['worst_window']['mean']:.2%} ± {figures['worst_window']['ci95']:.2%} "
                f"(over untuned {figures['worst_excess']['mean']:.2%}), "
                f"failed {figures['failed']['mean']:.1f}, cost of the last 5 min "
                f"{figures['last5min_cost_vs_declared']['mean']:.3f}x declared (whole run "
                f"{figures['run_cost_vs_declared']['mean']:.3f}x)",
                file=sys.stderr,
            )
            emit(
                {
                    "bench": "online_tuning",
                    "scenario": scenario,
                    "method": label,
                    "canary_share": args.canary_share if "@canary" in label else None,
                    "workflow": args.workflow,
                    "seeds": args.seeds,
                    "minutes": args.minutes,
                    "machine": machine(),
                    **figures,
                }
            )


if __name__ == "__main__":
    main()
