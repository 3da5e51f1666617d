"""Cold start per function on the local backend: request with zero replicas → response.

For every function in stack.yml: scale to zero, wait until no replica is left, send one
request and time it; repeat; then time warm requests on the same replica. The body is the
workflow payload for entry functions and ``{}`` otherwise (the handler still loads its
model at start-up, then answers 400 fast), so cold minus warm is the start-up cost.
Also measures a bare process spawn + Python start floor in the same run.

Usage: python bench/cold_start.py [--starts 10] [--warm 20] [--functions a,b]
Target (issue #3): process cold start for a function without a model < 500 ms.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

from _common import emit, machine, percentiles_ms, temp_home
from rich.progress import Progress

from testbed.backends import connect
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows

REPO = Path(__file__).resolve().parents[1]


def payload_for(function: str) -> bytes:
    from functions.workloads import make_payload

    catalog = load_workflows()
    for workflow in catalog.workflows.values():
        roots = [s.function for s in workflow.stages if not s.after]
        if function in roots:
            return make_payload(workflow.name, random.Random(0))
    if function in ("noop", "cpu-burn"):
        return make_payload(function, random.Random(0))
    return b"{}"


def spawn_floor_s(n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--functions", default="", help="comma-separated subset")
    args = parser.parse_args()
    stack = load_stack(REPO / "stack.yml")
    names = [n for n in args.functions.split(",") if n] or list(stack.functions)
    home = temp_home("cold")
    results: dict[str, dict[str, object]] = {}
    with connect("local", state_dir=home) as platform, Progress() as progress:
        task = progress.add_task("cold starts", total=len(names) * args.starts)
        for name in names:
            spec = stack[name]
            platform.deploy(spec)
            body = payload_for(name)
            platform.invoke(name, body)  # first start pays one-off caches (model training)
            cold: list[float] = []
            flags = 0
            for _ in range(args.starts):
                platform.scale(name, replicas=0)
                deadline = time.monotonic() + 30
                while platform.status(name).replicas and time.monotonic() < deadline:
                    time.sleep(0.02)
                result = platform.invoke(name, body)
                cold.append(result.duration_s)
                flags += result.cold_start
                progress.advance(task)
            warm = [platform.invoke(name, body).duration_s for _ in range(args.warm)]
            platform.remove(name)
            results[name] = {
                "cold_ms": percentiles_ms(cold),
                "warm_ms": percentiles_ms(warm),
                "cold_flagged": flags,
                "starts": len(cold),
            }
            progress.console.print(
                f"{name:24} cold p50 {results[name]['cold_ms']['p50']:8.1f} ms  "  # type: ignore[index]
                f"p95 {results[name]['cold_ms']['p95']:8.1f} ms   warm p50 "  # type: ignore[index]
                f"{results[name]['warm_ms']['p50']:7.2f} ms"  # type: ignore[index]
            )
    floor = percentiles_ms(spawn_floor_s(10))
    print(f"bare `python -c pass` spawn: p50 {floor['p50']:.1f} ms")
    emit(
        {
            "bench": "cold_start",
            "backend": "local",
            "functions": results,
            "python_spawn_floor_ms": floor,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
