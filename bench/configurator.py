"""Benchmark the resource configurators on the synthetic problems, plus the BO step time.

For each problem (heterogeneous: 6 functions/12 dims, ml-pipeline: 4/8, social-compose-post:
6/12) it runs Aquatope's safe constrained BO, the paper's BO (``paper-bo``), CherryPick,
Lambda Power Tuning and random search with the same budget and seeds, and prints ONE JSON
line per problem: first the oracle's headroom over each baseline (1 - optimum / true cost of
the baseline's pick, mean over seeds), then per method the true cost of its pick over the
exact optimum (mean and 95% t-interval over seeds), aquatope's cost over the method's (paired
per seed, mean and 95% interval: "cost at equal QoS", every pick having met the QoS as
measured), the share of picks that truly meet the QoS, evaluations to get within 5% of the
optimum, and infeasible trials. A last JSON line gives the BO step time at 4, 8, 12, 16 dims
(30 points; wall and CPU seconds: the machine is shared, CPU time is the steadier figure).

Evaluator: the synthetic problems of ``scheduler/problems.py`` (latency falls with CPU up to
a function's threads, memory pressure, log-normal noise; cost per DESIGN.md §8 with idle). The
simulator exists, but its shipped reference profile was measured without enforced CPU limits
(its CPU-scaling tables are flat), so CPU cannot trade against latency there; the synthetic
problems are shaped after the functions' work instead and say so.

Usage: ``python bench/configurator.py [--seeds 5] [--budget 30] [--problems heterogeneous,...]``
Prints human-readable lines and one JSON line per problem, then one for the step times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from scheduler.configure import make_configurator, qos_constraint, run_search
from scheduler.configure.evaluate import ProblemEvaluator
from scheduler.problems import PROBLEMS, SizingProblem, chain_problem, problem_by_name

METHODS = ("aquatope", "paper-bo", "cherrypick", "power-tuning", "random")
BASELINES = METHODS[1:]


def large_random_search(problem: SizingProblem, n: int, seed: int) -> float:
    """Cheapest noise-free feasible cost among ``n`` random lattice points."""
    space = problem.space()
    rng = np.random.default_rng(seed)
    best = np.inf
    for config in space.sample(n, rng):
        if problem.true_latency_s(config) <= problem.qos_target_s:
            best = min(best, problem.true_cost_usd(config))
    return float(best)


def run_method(
    problem: SizingProblem,
    method: str,
    seed: int,
    budget: int,
    aquatope_options: dict[str, float] | None = None,
) -> dict[str, Any]:
    space = problem.space()
    constraints = [qos_constraint(problem.qos_target_s)]
    options: dict[str, Any] = {"stop_rel_ei": 0.0} if method == "cherrypick" else {}
    if method == "aquatope":
        options.update(aquatope_options or {})
    configurator = make_configurator(
        method, space, constraints, seed=seed, workflow=problem.workflow(), **options
    )
    _, optimum = problem.optimum()
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_search(
        configurator,
        ProblemEvaluator(problem, seed=seed).evaluate,
        space=space,
        constraints=constraints,
        budget=budget,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    within5 = None
    best_true = np.inf
    for i, s in enumerate(result.trials, 1):
        if s.latency_s <= problem.qos_target_s and not s.measurement.failed:
            best_true = min(best_true, problem.true_cost_usd(s.config))
        if within5 is None and best_true <= 1.05 * optimum:
            within5 = i
    chosen = result.best
    ratio = problem.true_cost_usd(chosen.config) / optimum if chosen else None
    return {
        "method": method,
        "seed": seed,
        "true_cost_usd": problem.true_cost_usd(chosen.config) if chosen else None,
        "feasible_pick": bool(chosen)
        and problem.true_latency_s(chosen.config) <= problem.qos_target_s,
        "cost_ratio": ratio,
        "chosen_true_latency_over_qos": (
            problem.true_latency_s(chosen.config) / problem.qos_target_s if chosen else None
        ),
        "evals_to_5pct": within5,
        "infeasible_trials": result.infeasible_trials,
        "worst_trial_over_qos": worst_trial(result.trials, problem.qos_target_s),
        "evaluations": result.evaluations,
        "stop_reason": result.stop_reason,
        "trials": [
            {
                "source": getattr(s, "source", ""),
                "measured_over_optimum": s.cost_usd / optimum,
                "true_over_optimum": problem.true_cost_usd(s.config) / optimum,
                "feasible": s.latency_s <= problem.qos_target_s and not s.measurement.failed,
            }
            for s in result.trials
        ],
        "wall_s": wall,
        "cpu_s": cpu,
    }


def worst_trial(trials: list[Any], target_s: float) -> float:
    """The slowest trial's measured latency over the QoS target (what one bad trial costs
    the requests it serves; a failed trial counts as the latency cap, 3x)."""
    from scheduler.configure.search import LATENCY_CAP_FACTOR

    return max(
        LATENCY_CAP_FACTOR if s.measurement.failed else s.latency_s / target_s for s in trials
    )


def mean_ci(values: list[float]) -> dict[str, float | None]:
    """Mean and 95% t-interval half-width (None with fewer than two values)."""
    if not values:
        return {"mean": None, "ci95": None, "n": 0}
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    half = None
    if len(arr) > 1:
        half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr)))
    return {"mean": float(arr.mean()), "ci95": half, "n": len(arr)}


def step_time(
    problem: SizingProblem,
    n_points: int,
    seed: int = 0,
    options: dict[str, float] | None = None,
) -> dict[str, float]:
    """Wall and CPU seconds of one BO step (fit the models + optimise qLogNEI) at n_points,
    with ``options`` for the Aquatope configurator."""
    from scheduler.configure.base import ConfigSample
    from scheduler.configure.search import AquatopeConfigurator

    space = problem.space()
    rng = np.random.default_rng(seed)
    configs = [space.all_max(), *space.sample(n_points - 1, rng)]
    samples = [ConfigSample(c, problem.evaluate(c, rng), "x") for c in configs]
    conf = AquatopeConfigurator(
        space,
        [qos_constraint(problem.qos_target_s)],
        seed=seed,
        workflow=problem.workflow(),
        **(options or {}),  # type: ignore[arg-type]  # numeric options, checked by the class
    )
    conf.n_profile = 1
    conf.propose(samples)  # first step pays imports and cold caches
    walls, cpus = [], []
    for k in range(3):
        extra = space.sample(1, rng)[0]
        samples.append(ConfigSample(extra, problem.evaluate(extra, rng), "x"))
        t0, c0 = time.perf_counter(), time.process_time()
        conf.propose(samples)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        del k
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def summarise(rows: list[dict[str, Any]], ours: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["cost_ratio"] for r in rows if r["cost_ratio"] is not None]
    evals = [r["evals_to_5pct"] for r in rows]
    reached = [e for e in evals if e is not None]
    paired = [
        a["true_cost_usd"] / b["true_cost_usd"]
        for a, b in zip(ours, rows, strict=True)
        if a["true_cost_usd"] and b["true_cost_usd"]
    ]
    return {
        "cost_over_optimum": mean_ci(ratios),
        "aquatope_cost_over_this": mean_ci(paired),
        "feasible_picks": f"{sum(r['feasible_pick'] for r in rows)}/{len(rows)}",
        "within_5pct_runs": f"{len(reached)}/{len(rows)}",
        "evals_to_5pct_median": statistics.median(reached) if reached else None,
        "infeasible_trials": mean_ci([r["infeasible_trials"] for r in rows]),
        "worst_trial_over_qos": mean_ci([r["worst_trial_over_qos"] for r in rows]),
        "cpu_s_mean": statistics.mean(r["cpu_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (cores)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--step-dims", default="4,8,12,16", help="'' skips the step times")
    parser.add_argument(
        "--aquatope-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a numeric option of the Aquatope configurator (e.g. qos_margin=0.02); repeatable",
    )
    parser.add_argument(
        "--trials",
        action="store_true",
        help="print every run's trials: measured / true cost over the optimum, x = infeasible",
    )
    args = parser.parse_args()
    aquatope_options: dict[str, float] = {}
    for item in args.aquatope_option:
        key, sep, value = item.partition("=")
        try:
            # an integral value stays an int (counts such as n_profile slice sequences)
            number = float(value)
            aquatope_options[key] = int(number) if value.strip().lstrip("+-").isdigit() else number
        except ValueError:
            sep = ""
        if not sep:
            parser.error(f"--aquatope-option {item!r}: expected KEY=NUMBER")
    import torch

    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if "aquatope" not in methods:
        methods.insert(0, "aquatope")
    for name in [p for p in args.problems.split(",") if p]:
        problem = problem_by_name(name)
        _, optimum = problem.optimum()
        runs = {
            m: [run_method(problem, m, s, args.budget, aquatope_options) for s in range(args.seeds)]
            for m in methods
        }
        headroom = {
            m: mean_ci([1 - optimum / r["true_cost_usd"] for r in runs[m] if r["true_cost_usd"]])
            for m in methods
            if m != "aquatope"
        }
        per_method = {m: summarise(runs[m], runs["aquatope"]) for m in methods}
        if args.trials:
            for m in methods:
                for r in runs[m]:
                    steps = " ".join(
                        f"{'' if t['feasible'] else 'x'}{t['measured_over_optimum']:.3f}"
                        f"/{t['true_over_optimum']:.3f}"
                        for t in r["trials"]
                    )
                    print(f"{name} {m} seed {r['seed']} ({r['stop_reason']}): {steps}")
        for m, summary in per_method.items():
            c = summary["cost_over_optimum"]
            print(
                f"{name} {m:<13} cost/optimum {c['mean']:.3f} ± {c['ci95'] or 0:.3f}, "
                f"feasible picks {summary['feasible_picks']}, infeasible trials "
                f"{summary['infeasible_trials']['mean']:.1f}, worst trial "
                f"{summary['worst_trial_over_qos']['mean']:.2f}x the QoS, "
                f"cpu {summary['cpu_s_mean']:.1f} s/run",
                flush=True,
            )
        line = {
            "problem": name,
            "dims": problem.space().n_dims,
            "qos_target_s": problem.qos_target_s,
            "optimum_usd": optimum,
            "oracle_headroom_over": headroom,
            "budget": args.budget,
            "seeds": args.seeds,
            "methods": per_method,
            "load_avg": os.getloadavg()[0],
        }
        print(json.dumps(line, default=float), flush=True)
    steps = {}
    for dims in [int(d) for d in args.step_dims.split(",") if d]:
        st = step_time(chain_problem(dims // 2), 30, options=aquatope_options)
        steps[str(dims)] = st
        print(
            f"BO step at {dims} dims (30 points): "
            f"wall {st['wall_s']:.2f} s, cpu {st['cpu_s']:.2f} s",
            flush=True,
        )
    if steps:
        print(
            json.dumps(
                {
                    "bo_step_s": steps,
                    "points": 30,
                    "torch_threads": args.threads,
                    "cpu_count": os.cpu_count(),
                    "load_avg": os.getloadavg()[0],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
