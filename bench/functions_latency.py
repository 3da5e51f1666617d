"""Warm latency of every shipped function and workflow, in-process and (optionally) through
a local gateway.

In-process: each workflow's handlers are loaded once, warmed up, then run on fresh payloads from
``functions.workloads``; every stage's handler time is recorded (no HTTP). With ``--gateway``,
a private local gateway is started, every function pre-scaled to one replica, and each
workflow invoked warm end to end over HTTP.

Usage: ``python bench/functions_latency.py [--runs 60] [--gateway]``. Prints one line per
function and workflow, then one JSON object on the last line (milliseconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _summary(values_s: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values_s) * 1000, 3),
        "p95_ms": round(_pct(values_s, 95) * 1000, 3),
        "n": len(values_s),
    }


def in_process(runs: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-function and per-workflow warm latency with handlers called directly."""
    from functions import workloads
    from functions.inprocess import call, load_handlers, run_workflow
    from testbed.core.workflows import load_workflows

    catalog = load_workflows()
    names = sorted(catalog.functions | {"noop", "cpu-burn"})
    handlers = load_handlers(names)
    per_function: dict[str, list[float]] = defaultdict(list)
    per_workflow: dict[str, list[float]] = {}
    rng = random.Random(seed)
    for name, workflow in sorted(catalog.workflows.items()):
        for _ in range(3):  # warm-up: first calls touch lazy paths (allocators, caches)
            run_workflow(workflow, handlers, workloads.make_payload(name, rng))
        totals = []
        for _ in range(runs):
            payload = workloads.make_payload(name, rng)
            started = time.perf_counter()
            result = run_workflow(workflow, handlers, payload)
            totals.append(time.perf_counter() - started)
            for stage in workflow.stages:
                per_function[stage.function].append(result.stage_s[stage.name])
        per_workflow[name] = totals
    for name, body in (("noop", b"{}"), ("cpu-burn", b'{"n": 100000}')):
        for i in range(runs + 3):
            started = time.perf_counter()
            response = call(handlers[name], body)
            if i >= 3:
                per_function[name].append(time.perf_counter() - started)
            assert response.status_code == 200
    return (
        {k: _summary(v) for k, v in sorted(per_function.items())},
        {k: _summary(v) for k, v in sorted(per_workflow.items())},
    )


def through_gateway(runs: int, seed: int, state: Path) -> dict[str, Any]:
    """Warm end-to-end latency of each workflow through a local gateway (client-measured)."""
    from functions import workloads
    from functions.common.models import cache_dir
    from testbed.backends import connect
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows

    catalog = load_workflows()
    stack = load_stack(Path(__file__).resolve().parents[1] / "stack.yml")
    env = {"SOCIAL_DB": str(state / "social.db"), "AQUATOPE_MODEL_DIR": str(cache_dir())}
    out: dict[str, Any] = {}
    with connect("local", state_dir=state) as platform:
        for name in sorted(catalog.functions):
            spec = stack[name]
            platform.deploy(dataclasses.replace(spec, env={**spec.env, **env}))
            platform.scale(name, replicas=1)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if all(platform.status(n).replicas_ready >= 1 for n in catalog.functions):
                break
            time.sleep(0.2)
        rng = random.Random(seed)
        for name in sorted(catalog.workflows):
            for _ in range(3):
                platform.invoke(name, workloads.make_payload(name, rng), workflow=True)
            totals = []
            for _ in range(runs):
                payload = workloads.make_payload(name, rng)
                started = time.perf_counter()
                result = platform.invoke(name, payload, workflow=True, timeout_s=60)
                totals.append(time.perf_counter() - started)
                if result.status_code != 200 or json.loads(result.body).get("cold_start"):
                    raise RuntimeError(f"{name}: status {result.status_code} or a cold start")
            out[name] = _summary(totals)
    return out


def main() -> None:
    """Measure and print; the last line is the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gateway", action="store_true", help="also measure through a gateway")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aquatope-bench-") as tmp:
        os.environ["SOCIAL_DB"] = str(Path(tmp) / "inprocess.db")
        functions, workflows = in_process(args.runs, args.seed)
        for name, s in functions.items():
            print(f"function {name:24s} p50 {s['p50_ms']:8.2f} ms  p95 {s['p95_ms']:8.2f} ms")
        for name, s in workflows.items():
            print(f"in-process {name:22s} p50 {s['p50_ms']:8.2f} ms  p95 {s['p95_ms']:8.2f} ms")
        figures: dict[str, Any] = {"functions": functions, "workflows_in_process": workflows}
        if args.gateway:
            gateway = through_gateway(args.runs, args.seed, Path(tmp) / "gateway")
            for name, s in gateway.items():
                print(f"gateway {name:25s} p50 {s['p50_ms']:8.2f} ms  p95 {s['p95_ms']:8.2f} ms")
            figures["workflows_gateway"] = gateway
    figures["runs"] = args.runs
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
