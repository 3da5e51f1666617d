"""Pre-warming on a demo-like workload, in the simulator: cheap checks before a live run.

The live demo (``experiments/demo.yaml``) plays a bursty on/off trace (bursts of about 11 s,
gaps of about 11 s) into ``ml-pipeline``: a QoS target of 0.15 s at p95 over four stages,
two of which load torch and take seconds to cold-start. This bench replays such a trace on
the simulator (``testbed.sim``) with per-function service and cold-start times of that order
(constants below, from the live runs' logs) and reports, per policy:

* QoS violations: share of workflow requests slower than the target;
* cold starts (stage level), replica starts (scale-ups) and idle replica-seconds;
* the largest replica target of any function (how many starts one burst triggers);
* decide time per tick (median and max, milliseconds).

The simulator does not model CPU contention between starting replicas and serving ones (on
the live 2-core machine three torch starts at once took ~45 s): replica starts are reported
so that over-provisioning is visible anyway.

Usage: ``.venv/bin/python bench/prewarm_demo_sim.py [--seconds 300] [--seeds 2]``. Prints
one line per policy, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, machine

__all__ = ["main"]

# (service s, cold start s): order of magnitude of the live functions on this machine
FUNCTIONS = {
    "image-processing": (0.02, 1.0),
    "object-detection": (0.04, 3.5),
    "digit-classifier": (0.03, 3.5),
    "digit-classifier-svm": (0.02, 1.5),
}
TICK_S = 1.0
ON_S, OFF_S, RATE_ON = 11.0, 11.0, 2.0
POLICIES: list[tuple[str, str, dict[str, Any]]] = [
    ("always-on", "always-on", {}),
    ("scale-to-zero", "keep-alive", {"window_s": 7.5}),
    (
        "aquatope (no start cost, no gap model)",
        "aquatope-prewarm",
        {"step_s": 2.0, "start_weight": 0.0, "gaps": False},
    ),
    ("aquatope", "aquatope-prewarm", {"step_s": 2.0}),
]


def arrivals(seconds: float, seed: int) -> np.ndarray:
    """On/off Poisson arrivals: ``RATE_ON`` per second during bursts, none in gaps."""
    rng = np.random.default_rng(seed)
    out: list[float] = []
    t = 10.0
    while t < seconds:
        n = rng.poisson(RATE_ON * ON_S)
        out.extend(sorted(t + rng.uniform(0.0, ON_S, size=n)))
        t += ON_S + OFF_S * rng.uniform(0.7, 1.3)
    return np.asarray(out)


def run(policy: str, params: dict[str, Any], seconds: float, seed: int) -> dict[str, Any]:
    """One policy on one seed; figures of the run."""
    from scheduler.daemon import Daemon
    from scheduler.registry import create_policy
    from testbed.core.platform import FunctionSpec
    from testbed.core.workflows import default_workflows_dir, load_workflows
    from testbed.sim.distributions import Distribution
    from testbed.sim.platform import SimPlatform
    from testbed.sim.profile import FunctionProfile, Profile

    wf = load_workflows(default_workflows_dir()).get("ml-pipeline")
    profile = Profile(
        functions={
            f: FunctionProfile(
                service_s=Distribution.constant(s), cold_start_s=Distribution.constant(c)
            )
            for f, (s, c) in FUNCTIONS.items()
        }
    )
    sim = SimPlatform(profile, seed=seed, workflows=[wf])
    for f in FUNCTIONS:
        sim.deploy(FunctionSpec(name=f, labels={"com.openfaas.scale.max": "10"}))
    daemon = Daemon(
        sim, create_policy(policy, params), clock=sim.clock, tick_s=TICK_S, workflows=sim.workflows
    )
    decide_s: list[float] = []
    peak: dict[str, int] = {f: 0 for f in FUNCTIONS}

    def tick(_t: float) -> None:
        t0 = time.perf_counter()
        daemon.tick()
        decide_s.append(time.perf_counter() - t0)

    res = sim.run_trace({wf.name: arrivals(seconds, seed)}, until_s=seconds, on_tick=tick)
    req = res.requests
    tl = res.timeline.sort_values(["function", "t_s"])
    idle, starts = 0.0, 0
    for fn, part in tl.groupby("function"):
        t = part["t_s"].to_numpy()
        alive = (part["replicas_ready"] + part["replicas_starting"]).to_numpy()
        busy = part["busy"].to_numpy()
        dt = np.diff(np.append(t, seconds))
        idle += float(np.sum(np.clip(alive - busy, 0, None) * np.clip(dt, 0, None)))
        starts += int(np.sum(np.clip(np.diff(alive), 0, None)))
        peak[str(fn)] = int(alive.max()) if alive.size else 0
    lat = req["latency_s"].to_numpy()
    return {
        "requests": len(req),
        "violations": int(np.sum(lat > float(wf.qos.target_s))),
        "p95_s": float(np.percentile(lat, 95)) if lat.size else 0.0,
        "cold_stages": int(res.stages["cold_start"].sum()),
        "replica_starts": starts,
        "idle_replica_s": idle,
        "peak_replicas": max(peak.values()),
        "decide_ms": [1000 * v for v in decide_s],
    }


def main(argv: list[str] | None = None) -> None:
    """Run every policy over the seeds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    figures: dict[str, Any] = {"machine": machine(), "seconds": args.seconds, "policies": {}}
    for label, policy, params in POLICIES:
        runs = [run(policy, params, args.seconds, seed) for seed in range(args.seeds)]
        n = sum(r["requests"] for r in runs)
        decide = [v for r in runs for v in r["decide_ms"]]
        row = {
            "policy": policy,
            "params": params,
            "requests": n,
            "qos_violations_pct": round(100 * sum(r["violations"] for r in runs) / max(n, 1), 1),
            "p95_s": round(statistics.fmean(r["p95_s"] for r in runs), 3),
            "cold_stages": sum(r["cold_stages"] for r in runs),
            "replica_starts": sum(r["replica_starts"] for r in runs),
            "idle_replica_s": round(sum(r["idle_replica_s"] for r in runs), 1),
            "peak_replicas": max(r["peak_replicas"] for r in runs),
            "decide_ms_median": round(statistics.median(decide), 3),
            "decide_ms_max": round(max(decide), 1),
        }
        figures["policies"][label] = row
        print(
            f"{label:40s} viol {row['qos_violations_pct']:5.1f}% p95 {row['p95_s']:.3f}s "
            f"cold {row['cold_stages']:4d} starts {row['replica_starts']:3d} "
            f"idle {row['idle_replica_s']:7.0f} replica-s peak {row['peak_replicas']} "
            f"decide {row['decide_ms_median']} ms (max {row['decide_ms_max']})"
        )
    emit(figures)


if __name__ == "__main__":
    main()
