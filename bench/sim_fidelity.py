"""Simulator fidelity: the same trace and policies run live (local backend) and in the sim.

Both sides go through the experiment runner (``testbed.experiment.run.run_experiment``) with
one config that differs only in ``backend``, and both are scored by the one metrics module
(``testbed.report.metrics.compute_metrics``): p50/p95 end-to-end, cold starts and cost
(decoupled pricing) side by side, with the sim/live ratio. The issue's targets: p95 and cold
starts within 10%, cost within 5%.

Usage::

    .venv/bin/python bench/sim_fidelity.py [--minutes 5] [--workflow ml-pipeline]
        [--profile DIR_OR_FILE] [-o OUT]

``--minutes`` is the live duration per policy (two policies run, so the live part takes about
twice that plus start-up). Prints lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

POLICIES = [
    {"name": "always-on"},
    {"name": "keep-alive", "label": "keepalive-10s", "params": {"window_s": 10.0}},
]


def config(backend: str, minutes: float, workflow: str, profile: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": f"fidelity-{backend}",
        "backend": backend,
        "stack": str(REPO / "stack.yml"),
        "workflows": [workflow],
        "trace": {
            "kind": "bursty",
            "minutes": int(max(1, math.ceil(minutes))),
            "options": {"rate_per_min": 20, "on_min": 0.5, "off_min": 1.5},
        },
        "duration_s": minutes * 60.0,
        "warmup_s": 10.0,
        "drain_s": 20.0,
        "seeds": [1],
        "tick_s": 1.0,
        "policies": POLICIES,
    }
    if backend == "sim" and profile:
        cfg["backend_options"] = {"profile": profile}
    return cfg


def run(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the config; return its runs (loaded) and the wall time."""
    from testbed.experiment.results import find_runs, load_run
    from testbed.experiment.run import run_experiment
    from testbed.experiment.spec import parse_spec

    spec = parse_spec(cfg)
    started = time.perf_counter()
    run_experiment(spec, out)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "runs": {load_run(d).label: load_run(d) for d in find_runs([out])}}


def figures(run: Any, end_s: float) -> dict[str, float]:
    """p50/p95, cold starts and cost of one run, cost over [warm-up, end_s]."""
    from testbed.report.cost import compute_cost
    from testbed.report.metrics import compute_metrics, measured_requests

    m = compute_metrics(run)
    req = measured_requests(run)
    cost = compute_cost(run.timeline, start_s=run.warmup_s, end_s=end_s, invocations=len(req))
    return {
        "requests": m.requests,
        "p50_s": m.latency_s.get("p50", math.nan),
        "p95_s": m.latency_s.get("p95", math.nan),
        "cold_starts": int(req["cold_start"].sum()),
        "cost_usd": cost.decoupled_usd,
    }


def profile_first(workflow: str, out: Path) -> str:
    """Measure the workflow's functions on the local backend now (same machine state)."""
    import os

    from testbed.backends import connect
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows
    from testbed.sim.payloads import function_payloads
    from testbed.sim.profile import save_profile
    from testbed.sim.profiler import ProfileSettings, profile_functions

    catalog = load_workflows()
    names = list(catalog.get(workflow).functions)
    stack = load_stack(REPO / "stack.yml")
    home = out / ".home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AQUATOPE_HOME"] = str(home)
    payloads = function_payloads(catalog.workflows.values(), names)
    platform = connect("local", state_dir=str(home))
    try:
        profile = profile_functions(
            platform,
            [stack[n] for n in names],
            payloads,
            settings=ProfileSettings(n_service=30, n_cold=5),
            provenance={"method": "bench/sim_fidelity.py --profile-first", "backend": "local"},
            log=print,
        )
    finally:
        platform.close()
    return str(save_profile(profile, out / "profile.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workflow", default="ml-pipeline")
    parser.add_argument("--profile", default=None, help="sim profile (default: shipped)")
    parser.add_argument(
        "--profile-first", action="store_true", help="measure a fresh profile before the runs"
    )
    parser.add_argument("-o", "--out", default=None)
    parser.add_argument(
        "--live-dir", default=None, help="reuse the live runs of an earlier run (its OUT/live)"
    )
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="sim-fidelity-"))
    if args.profile_first:
        args.profile = profile_first(args.workflow, root / "profile")
        print(f"profile: {args.profile}")
    if args.live_dir:
        from testbed.experiment.results import find_runs, load_run

        runs = {load_run(d).label: load_run(d) for d in find_runs([args.live_dir])}
        live_runs: dict[str, Any] = {"wall_s": math.nan, "runs": runs}
    else:
        live_runs = run(config("local", args.minutes, args.workflow, None), root / "live")
    sim_runs = run(config("sim", args.minutes, args.workflow, args.profile), root / "sim")
    rows: dict[str, Any] = {}
    for label, live_run in live_runs["runs"].items():
        sim_run = sim_runs["runs"][label]
        # the live sampler stops when the replay ends: score both over the live timeline's span
        end_s = float(live_run.timeline["t_s"].max())
        a, b = figures(live_run, end_s), figures(sim_run, end_s)
        a["wall_s"], b["wall_s"] = live_runs["wall_s"], sim_runs["wall_s"]
        row: dict[str, Any] = {}
        for key in ("p50_s", "p95_s", "cold_starts", "cost_usd"):
            lv, sv = a.get(key, math.nan), b.get(key, math.nan)
            ratio = sv / lv if lv else math.nan
            row[key] = {"live": lv, "sim": sv, "sim_over_live": ratio}
            print(f"{label:>14} {key:>11}: live {lv:.6g}  sim {sv:.6g}  ratio {ratio:.3f}")
        row["requests"] = {"live": a["requests"], "sim": b.get("requests")}
        row["wall_s"] = {"live": a["wall_s"], "sim": b.get("wall_s")}
        rows[label] = row
    print(
        json.dumps(
            {
                "live_dir": args.live_dir or str(root / "live"),
                "minutes_per_policy": args.minutes,
                "workflow": args.workflow,
                "profile": args.profile or "shipped reference",
                "results": rows,
                "dir": str(root),
            }
        )
    )


if __name__ == "__main__":
    main()
