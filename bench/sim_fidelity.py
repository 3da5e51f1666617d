"""Simulator fidelity: identical traces and policies run live (local or docker) and in the sim.

For every trace × policy × seed the experiment runner (``testbed.experiment.run``) runs one
config twice, differing only in ``backend`` (``local`` or ``docker``, then ``sim``); both are
scored by the
one metrics module (``testbed.report``): QoS violations, cold starts, p95, p99 (after the
warm-up) and decoupled cost (over the live timeline's span, on both). Per metric it reports
the sim's relative error ``(sim - live) / live`` with a 95 % bootstrap interval (requests of
both runs resampled together; cost: over seeds), whether it meets the issue's target (QoS and
cold starts ±10 % relative or ±0.5 points below 5 %, p95/p99 ±15 %, cost ±5 %) and, per trace,
whether the policy ranking by each metric is the same on both sides.

Usage::

    .venv/bin/python bench/sim_fidelity.py [--backend local|docker] [--duration-s 45] \
        [--seeds 1] [--traces bursty,flash] \
        [--policies always-on,keep-alive,hybrid-histogram,aquatope-prewarm] \
        [--profile DIR_OR_FILE | --profile-first] [--live-dir OUT/live] \
        [--warm-from-live] [-o OUT]

``--profile-first`` measures a profile of the workflows' functions on the live backend right
before the live runs (same machine state; on ``docker`` its images must be built:
``aquatope build``). ``--warm-from-live`` (two seeds or more) runs each seed's sim on that
profile with its warm service times taken from the other seeds' live runs
(:mod:`testbed.sim.warm_samples`, as ``aquatope profile-from-runs`` does): the host's own
load and the workflows' real payloads, held out from the runs it is scored against.
Prints lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# The demo's trace (experiments/demo.yaml) and a flash crowd, both 8x compressed.
TRACES: dict[str, dict[str, Any]] = {
    "bursty": {
        "kind": "bursty",
        "minutes": 8,
        "compress": 8,
        "options": {"rate_per_min": 8, "on_min": 1.5, "off_min": 1.5},
    },
    "flash": {
        "kind": "flash-crowd",
        "minutes": 8,
        "compress": 8,
        "options": {"rate_per_min": 4, "surge": 5, "start_minute": 2, "decay_min": 1.5},
    },
    # video-analytics' sparse requests (experiments/video-analytics.yaml), 4x compressed:
    # one request per 30 s on average (use with --workflows video-analytics --duration-s 600)
    "video": {"kind": "poisson", "minutes": 40, "compress": 4, "options": {"rate_per_min": 0.5}},
}
# Time constants scaled for traces played 8x faster than real time.
POLICIES: dict[str, dict[str, Any]] = {
    "always-on": {"name": "always-on"},
    "keep-alive": {"name": "keep-alive", "params": {"window_s": 7.5}},
    "hybrid-histogram": {"name": "hybrid-histogram", "params": {"range_s": 900.0, "bin_s": 2.0}},
    "aquatope-prewarm": {"name": "aquatope-prewarm", "params": {"step_s": 2.0}},
    # the video trace's (4x compressed): the DAG lead at a price that keeps nothing idle
    "aquatope-prewarm-30": {
        "name": "aquatope-prewarm",
        "params": {"step_s": 2.5, "miss_price_s": 30},
    },
    "aquatope-prewarm-300": {
        "name": "aquatope-prewarm",
        "params": {"step_s": 2.5, "miss_price_s": 300},
    },
    "no-dag-30": {
        "name": "aquatope-prewarm",
        "params": {"step_s": 2.5, "miss_price_s": 30, "dag": False},
    },
}
METRICS = ("qos_violation_pct", "cold_start_pct", "p95_s", "p99_s", "cost_usd")
TOLERANCE = {"p95_s": 0.15, "p99_s": 0.15, "cost_usd": 0.05}
BOOTSTRAP = 1000


def config(
    args: argparse.Namespace,
    backend: str,
    trace: str,
    *,
    seeds: list[int] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """One experiment config; only ``backend`` (and the sim's profile) differ."""
    profile = profile or args.profile
    cfg: dict[str, Any] = {
        "name": f"fidelity-{trace}-{backend}",
        "backend": backend,
        "stack": str(REPO / "stack.yml"),
        "workflows": args.workflows.split(","),
        "trace": TRACES[trace],
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "drain_s": 10.0,
        "settle_s": args.settle_s,
        "seeds": seeds or args.seed_list,
        "tick_s": 1.0,
        "sample_s": 0.5,
        "loadgen": {"timeout_s": 30, "locust_csv": False},
        "decisions": "every",  # every function's reason every tick: divergences can be traced
        "policies": [{**POLICIES[p], "label": p} for p in args.policy_list],
    }
    if backend == "sim":
        options: dict[str, Any] = {}
        if profile:
            options["profile"] = profile
        if args.host_cores:
            options["host_cores"] = args.host_cores
        if options:
            cfg["backend_options"] = options
    return cfg


def run(cfg: dict[str, Any], out: Path) -> dict[tuple[str, int], Any]:
    """Run a config; its runs loaded, keyed by (policy label, seed)."""
    from testbed.experiment.run import run_experiment
    from testbed.experiment.spec import parse_spec

    run_experiment(parse_spec(cfg), out)
    return load_runs(out)


def load_runs(out: Path) -> dict[tuple[str, int], Any]:
    from testbed.experiment.results import find_runs, load_run

    runs = {}
    for d in find_runs([out]):
        r = load_run(d)
        runs[(r.label, r.seed)] = r
    return runs


def request_figures(req: Any) -> dict[str, float]:
    """QoS violations, cold starts (both %), p95 and p99 (s) of scored requests."""
    from testbed.report.metrics import violation_mask

    if len(req) == 0:
        return dict.fromkeys(METRICS[:4], math.nan)
    lat = req["latency_s"].to_numpy(dtype=float)
    return {
        "qos_violation_pct": 100.0 * float(np.mean(violation_mask(req))),
        "cold_start_pct": 100.0 * float(req["cold_start"].mean()),
        "p95_s": float(np.quantile(lat, 0.95)),
        "p99_s": float(np.quantile(lat, 0.99)),
    }


def cost_usd(run: Any, end_s: float, requests: int) -> float:
    from testbed.report.cost import compute_cost

    cost = compute_cost(run.timeline, start_s=run.warmup_s, end_s=end_s, invocations=requests)
    return float(cost.decoupled_usd)


def rel_err(sim: float, live: float) -> float:
    if not live:
        return 0.0 if sim == live else math.inf
    return (sim - live) / live


def meets(metric: str, sim: float, live: float) -> bool:
    """The issue's targets (percentages: ±10 % relative, or ±0.5 points below 5 %)."""
    if metric in TOLERANCE:
        return abs(rel_err(sim, live)) <= TOLERANCE[metric]
    if live < 5.0:
        return abs(sim - live) <= 0.5
    return abs(rel_err(sim, live)) <= 0.10


def compare(
    pairs: list[tuple[Any, Any]], rng: np.random.Generator
) -> dict[str, dict[str, float | bool]]:
    """Pooled figures over seeds for one (trace, policy), with bootstrap intervals."""
    from testbed.report.metrics import measured_requests

    live_req = [measured_requests(a) for a, _ in pairs]
    sim_req = [measured_requests(b) for _, b in pairs]
    import pandas as pd

    lv_all, sv_all = pd.concat(live_req), pd.concat(sim_req)
    live, sim = request_figures(lv_all), request_figures(sv_all)
    boot: dict[str, list[float]] = {m: [] for m in METRICS[:4]}
    for _ in range(BOOTSTRAP):
        a = lv_all.iloc[rng.integers(0, len(lv_all), len(lv_all))]
        b = sv_all.iloc[rng.integers(0, len(sv_all), len(sv_all))]
        fa, fb = request_figures(a), request_figures(b)
        for m in boot:
            boot[m].append(rel_err(fb[m], fa[m]))
    costs = []
    for (a, b), ra in zip(pairs, live_req, strict=True):
        end_s = float(a.timeline["t_s"].max())  # the live sampler stops with the replay
        costs.append((cost_usd(a, end_s, len(ra)), cost_usd(b, end_s, len(ra))))
    live["cost_usd"] = float(np.mean([c[0] for c in costs]))
    sim["cost_usd"] = float(np.mean([c[1] for c in costs]))
    cost_errs = [rel_err(s, v) for v, s in costs]
    out: dict[str, dict[str, float | bool]] = {}
    for m in METRICS:
        errs = np.asarray(boot.get(m, cost_errs), dtype=float)
        errs = errs[np.isfinite(errs)]
        lo, hi = np.quantile(errs, [0.025, 0.975]) if len(errs) > 1 else (math.nan, math.nan)
        out[m] = {
            "live": live[m],
            "sim": sim[m],
            "rel_err": rel_err(sim[m], live[m]),
            "ci_lo": float(lo),
            "ci_hi": float(hi),
            "meets_target": meets(m, sim[m], live[m]),
        }
    out["requests"] = {"live": float(len(lv_all)), "sim": float(len(sv_all))}
    return out


def ranking(rows: dict[str, Any], metric: str, side: str) -> list[str]:
    """Policies ordered by ``metric`` (ties broken by name, equal values share a rank)."""
    values = {p: round(float(r[metric][side]), 6) for p, r in rows.items()}
    return [f"{p}={values[p]:g}" for p in sorted(values, key=lambda p: (values[p], p))]


def same_order(rows: dict[str, Any], metric: str) -> bool:
    """Whether sim and live rank the policies alike (pairwise: no strict order reversed)."""
    names = sorted(rows)
    for i, p in enumerate(names):
        for q in names[i + 1 :]:
            lv = np.sign(rows[p][metric]["live"] - rows[q][metric]["live"])
            sv = np.sign(rows[p][metric]["sim"] - rows[q][metric]["sim"])
            if lv != sv:
                return False
    return True


def within_target(policies: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per metric, ``(cells meeting the issue's target, cells)`` over the policies."""
    out: dict[str, tuple[int, int]] = {}
    for m in METRICS:
        cells = [row[m]["meets_target"] for row in policies.values() if m in row]
        out[m] = (sum(bool(c) for c in cells), len(cells))
    return out


def pairs_in_order(rows: dict[str, Any], metric: str) -> tuple[int, int]:
    """``(agreeing, ordered)``: of the policy pairs that live orders strictly by
    ``metric``, how many the sim orders the same way (a sim tie counts against). With many
    policies one swapped pair makes the ranking differ; this says by how much."""
    names = sorted(rows)
    agree = ordered = 0
    for i, p in enumerate(names):
        for q in names[i + 1 :]:
            lv = np.sign(round(rows[p][metric]["live"] - rows[q][metric]["live"], 9))
            if lv == 0:
                continue
            ordered += 1
            agree += int(lv == np.sign(round(rows[p][metric]["sim"] - rows[q][metric]["sim"], 9)))
    return agree, ordered


def markdown(results: dict[str, Any]) -> list[str]:
    """The docs table: per trace and policy, each metric live → sim, rel. error [95 % CI]."""
    head = {
        "qos_violation_pct": "QoS viol. %",
        "cold_start_pct": "cold starts %",
        "p95_s": "p95 s",
        "p99_s": "p99 s",
        "cost_usd": "cost $",
    }
    lines = [
        "| trace | policy | " + " | ".join(head.values()) + " |",
        "| --- | --- |" + " --- |" * len(head),
    ]
    for trace, block in results.items():
        for policy, row in block["policies"].items():
            cells = []
            for m in head:
                f = row[m]
                ci = f" [{f['ci_lo']:+.0%}, {f['ci_hi']:+.0%}]" if math.isfinite(f["ci_lo"]) else ""
                mark = "" if f["meets_target"] else " ✗"
                cells.append(f"{f['live']:.3g} → {f['sim']:.3g} ({f['rel_err']:+.0%}{ci}){mark}")
            lines.append(f"| {trace} | {policy} | " + " | ".join(cells) + " |")
        same = [m for m, o in block["ranking"].items() if o["identical"]]
        lines.append(
            f"| {trace} | ranking same on | {', '.join(head[m] for m in same) or 'none'} |"
            + " |" * (len(head) - 1)
        )
        pairs = [f"{o['pairs'][0]}/{o['pairs'][1]}" for o in block["ranking"].values()]
        lines.append(f"| {trace} | pairs in live's order | " + " | ".join(pairs) + " |")
        met = within_target(block["policies"])
        lines.append(
            f"| {trace} | within target | "
            + " | ".join(f"{met[m][0]}/{met[m][1]}" for m in head)
            + " |"
        )
    return lines


def profile_first(args: argparse.Namespace, out: Path) -> str:
    """Measure the workflows' functions on the live backend now (same machine state)."""
    from testbed.backends import connect
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows
    from testbed.sim.payloads import function_payloads
    from testbed.sim.profile import save_profile
    from testbed.sim.profiler import ProfileSettings, profile_functions

    catalog = load_workflows()
    names: list[str] = []
    for target in args.workflows.split(","):
        for wf in catalog.resolve(target).weights:
            names.extend(catalog.get(wf).functions)
    names = list(dict.fromkeys(names))
    stack = load_stack(REPO / "stack.yml")
    home = out / ".home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AQUATOPE_HOME"] = str(home)
    payloads = function_payloads(catalog.workflows.values(), names)
    platform = connect(args.backend, state_dir=str(home))
    try:
        profile = profile_functions(
            platform,
            [stack[n] for n in names],
            payloads,
            settings=ProfileSettings(n_service=20, n_cold=5, cpu_levels=(1.0,)),
            provenance={"method": "bench/sim_fidelity.py --profile-first", "backend": args.backend},
            log=print,
        )
    finally:
        platform.close()
    return str(save_profile(profile, out / "profile.json"))


def warm_profiles(
    args: argparse.Namespace, live: dict[str, dict[tuple[str, int], Any]], out: Path
) -> dict[int, str]:
    """Per seed, the sim profile with warm service times from the *other* seeds' live runs
    (every trace and policy): held out, so the sim is not scored on its own samples."""
    from testbed.experiment.live_profile import live_samples
    from testbed.sim.profile import load_profile, save_profile
    from testbed.sim.warm_samples import LiveSamples, with_warm_service

    base = load_profile(args.profile, check_conditions=False)
    paths: dict[int, list[Path]] = {}
    for runs in live.values():
        for (_label, seed), run in runs.items():
            paths.setdefault(seed, []).append(run.path)
    profiles: dict[int, str] = {}
    for seed in args.seed_list:
        others = [p for s, ps in paths.items() if s != seed for p in ps]
        samples = live_samples(others, base, host_cores=args.host_cores)
        if args.no_overhead:
            samples = LiveSamples(samples.functions, [], samples.facts)
        profile = with_warm_service(
            base, samples, min_samples=args.warm_min_samples, idle=not args.no_idle
        )
        warm = profile.provenance["warm_service"]
        print(f"seed {seed}: warm service from {len(others)} live runs: {warm['replaced']}")
        print(f"seed {seed}: idle scaling: {warm['idle_scaling']}")
        profiles[seed] = str(save_profile(profile, out / f"seed-{seed}" / "profile.json"))
    return profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--backend", choices=("local", "docker"), default="local", help="the live side"
    )
    parser.add_argument("--duration-s", type=float, default=45.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--settle-s", type=float, default=20.0)
    parser.add_argument("--seeds", default="1", help="comma-separated trace/sim seeds")
    parser.add_argument("--traces", default="bursty,flash", help=f"of {', '.join(TRACES)}")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"of {', '.join(POLICIES)}")
    parser.add_argument("--workflows", default="ml-pipeline,social-network")
    parser.add_argument("--profile", default=None, help="sim profile (default: shipped)")
    parser.add_argument("--profile-first", action="store_true", help="measure a profile first")
    parser.add_argument("--host-cores", type=float, default=None, help="sim host cores")
    parser.add_argument("--live-dir", default=None, help="reuse live runs (an earlier OUT/live)")
    parser.add_argument(
        "--warm-from-live",
        action="store_true",
        help="each seed's sim takes warm service times from the other seeds' live runs",
    )
    parser.add_argument("--warm-min-samples", type=int, default=20)
    parser.add_argument(
        "--no-idle", action="store_true", help="with --warm-from-live: no idle-scaling fit"
    )
    parser.add_argument(
        "--no-overhead",
        action="store_true",
        help="with --warm-from-live: keep the profile's gateway overhead",
    )
    parser.add_argument("-o", "--out", default=None)
    args = parser.parse_args()
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.policy_list = [p for p in args.policies.split(",") if p]
    unknown = [p for p in args.policy_list if p not in POLICIES] + [
        t for t in args.traces.split(",") if t not in TRACES
    ]
    if unknown:
        parser.error(f"unknown policy or trace: {', '.join(unknown)}")
    if args.warm_from_live and len(args.seed_list) < 2:
        parser.error("--warm-from-live needs two seeds or more (each is held out in turn)")
    root = Path(args.out or tempfile.mkdtemp(prefix="sim-fidelity-"))
    load = os.getloadavg()
    if args.profile_first:
        args.profile = profile_first(args, root / "profile")
        print(f"profile: {args.profile}")
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    traces = args.traces.split(",")
    live_runs: dict[str, dict[tuple[str, int], Any]] = {}
    for trace in traces:  # every live run first: a seed's sim may read the others'
        if args.live_dir:
            live_runs[trace] = load_runs(Path(args.live_dir) / trace)
        else:
            live_runs[trace] = run(config(args, args.backend, trace), root / "live" / trace)
    held_out = warm_profiles(args, live_runs, root / "warm") if args.warm_from_live else {}
    for trace in traces:
        live = live_runs[trace]
        if held_out:
            sim = {}
            for seed, path in held_out.items():
                cfg = config(args, "sim", trace, seeds=[seed], profile=path)
                sim.update(run(cfg, root / "sim" / trace / f"seed-{seed}"))
        else:
            sim = run(config(args, "sim", trace), root / "sim" / trace)
        rows: dict[str, Any] = {}
        for policy in args.policy_list:
            pairs = [(live[(policy, s)], sim[(policy, s)]) for s in args.seed_list]
            rows[policy] = compare(pairs, rng)
            for m in METRICS:
                f = rows[policy][m]
                print(
                    f"{trace:>7} {policy:>17} {m:>17}: live {f['live']:.4g} sim {f['sim']:.4g} "
                    f"rel.err {f['rel_err']:+.2f} [{f['ci_lo']:+.2f}, {f['ci_hi']:+.2f}]"
                    f"{'' if f['meets_target'] else '  (target missed)'}"
                )
        order: dict[str, dict[str, Any]] = {
            m: {
                "identical": same_order(rows, m),
                "pairs": pairs_in_order(rows, m),
                "live": ranking(rows, m, "live"),
                "sim": ranking(rows, m, "sim"),
            }
            for m in METRICS
        }
        for m, o in order.items():
            agree, ordered = o["pairs"]
            print(
                f"{trace:>7} ranking by {m}: {'same' if o['identical'] else 'DIFFERENT'} "
                f"({agree} of {ordered} ordered pairs in live's order)"
            )
        met = within_target(rows)
        print(
            f"{trace:>7} within target: " + ", ".join(f"{m} {a}/{n}" for m, (a, n) in met.items())
        )
        results[trace] = {"policies": rows, "ranking": order, "within_target": met}
    print("\n".join(markdown(results)))
    print(
        json.dumps(
            {
                "dir": str(root),
                "backend": args.backend,
                "profile": args.profile or "shipped reference",
                "warm_from_live": held_out or None,
                "host_cores": args.host_cores or "profile machine",
                "seeds": args.seed_list,
                "duration_s": args.duration_s,
                "loadavg_at_start": [round(x, 2) for x in load],
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                "wall_s": round(time.perf_counter() - started, 1),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
