"""First calls on freshly started replicas, through a private local gateway.

A pre-warmer starts a workflow's replicas a few seconds before the calls it expects; if the
first call on a new replica is slower than later ones, pre-warming saves less than the
simulator (which has no such cost) says. Each round starts every stage of the workflow at
once (as the pre-warmer does), waits ``--gap`` seconds after the last is ready, sends
``--burst`` workflow requests at once (as a timer firing several calls does), prints their
end-to-end latencies, then scales back to zero.

Usage: ``.venv/bin/python bench/first_call.py [--workflow ml-pipeline] [--rounds 4]
[--gap 5] [--burst 3]``. Prints one line per round, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from functions import workloads
from testbed.backends import connect
from testbed.core.platform import Platform
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows

REPO = Path(__file__).resolve().parents[1]


def _wait(platform: Platform, names: list[str], *, ready: bool, timeout_s: float = 120.0) -> None:
    """Until every function has a ready replica (``ready``) or none at all."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [platform.status(name) for name in names]
        if ready and all(s.replicas_ready >= 1 for s in states):
            return
        if not ready and all(s.replicas_ready + s.replicas_starting == 0 for s in states):
            return
        time.sleep(0.05)
    raise TimeoutError(f"replicas of {names} not {'ready' if ready else 'gone'} in {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", default="ml-pipeline")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--gap", type=float, default=5.0, help="seconds from ready to calls")
    parser.add_argument("--burst", type=int, default=3, help="workflow requests sent at once")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.rounds < 1 or args.burst < 1 or args.gap < 0:
        parser.error("--rounds and --burst must be >= 1, --gap >= 0")
    workflow = load_workflows().workflows[args.workflow]
    names = sorted({stage.function for stage in workflow.stages})
    stack = load_stack(REPO / "stack.yml")
    rng = random.Random(args.seed)
    headers = {"Content-Type": "application/json"}
    latencies: list[list[float]] = []
    platform = connect("local", state_dir=tempfile.mkdtemp(prefix="first-call-"))
    try:
        for name in names:
            platform.deploy(stack[name])
        for round_no in range(args.rounds):
            for name in names:
                platform.scale(name, replicas=1)
            _wait(platform, names, ready=True)
            time.sleep(args.gap)
            bodies = [workloads.make_payload(args.workflow, rng) for _ in range(args.burst)]
            with ThreadPoolExecutor(args.burst) as pool:
                results = list(
                    pool.map(
                        lambda body: platform.invoke(
                            args.workflow, body, workflow=True, headers=headers
                        ),
                        bodies,
                    )
                )
            bad = [r.status_code for r in results if r.status_code != 200]
            if bad:
                raise SystemExit(f"round {round_no}: workflow answered {bad}")
            ms = [round(r.duration_s * 1000, 1) for r in results]
            latencies.append(ms)
            print(f"round {round_no}: first calls, end to end ms {ms}", flush=True)
            for name in names:
                platform.scale(name, replicas=0)
            _wait(platform, names, ready=False)
    finally:
        platform.close()
    every = [v for row in latencies for v in row]
    print(
        json.dumps(
            {
                "workflow": args.workflow,
                "gap_s": args.gap,
                "burst": args.burst,
                "rounds_ms": latencies,
                "median_ms": statistics.median(every),
                "max_ms": max(every),
            }
        )
    )


if __name__ == "__main__":
    main()
