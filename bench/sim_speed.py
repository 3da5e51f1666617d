"""Simulator speed: 24 h Azure-like trace, 50 functions (~1M invocations), policy every second.

Two measurements, same trace and profile (the shipped reference profile; the 50 synthetic
functions are mapped round-robin onto its measured functions):

* ``sim+policy``: the simulator with the ``keepalive-knative`` policy object deciding every
  simulated second through a lean in-bench loop (counter diffs -> Observation -> decide ->
  scale) — the simulator's own cost plus the policy's;
* ``sim alone``: the same run with no policy (ticks only sample the timeline and read
  ``metrics()``), the simulator's own cost;
* ``sim+daemon``: the real ``scheduler.daemon.Daemon`` (observe, decide, actuate, no log
  file) on the first ``--daemon-hours`` hours, extrapolated to 24 h;
* ``workflow day``: per policy in ``--policies``, a simulated day (``--workflow-hours``) of
  both workflows (``ml-pipeline`` and the ``social-network`` mix, diurnal Poisson arrivals,
  ``--workflow-rate`` requests/s each on average) through the real daemon, every function
  of the shipped profile deployed; wall seconds per simulated day (goal < 60 s per policy).

Usage: ``.venv/bin/python bench/sim_speed.py [--hours 24] [--daemon-hours 1]
[--policies aquatope-prewarm,aquatope] [--workflow-hours 24] [--skip-azure]``.
Prints lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from loadgen.traces.synthetic import synthesize
from scheduler.daemon import Daemon
from scheduler.policies.keepalive import KNATIVE_WINDOW_S, KeepAlivePolicy
from scheduler.policy import FunctionObservation, Observation
from scheduler.registry import create_policy
from testbed.core.platform import FunctionSpec
from testbed.sim import SimPlatform, load_profile


def make_trace(n_functions: int, hours: float, target: int, seed: int) -> dict[str, np.ndarray]:
    """Azure-like per-minute counts (loadgen's generator), scaled to about ``target`` calls/day."""
    minutes = int(hours * 60)
    counts = synthesize("azure-like", functions=n_functions, minutes=minutes, seed=seed).counts
    rng = np.random.default_rng(seed)
    scale = target * (minutes / 1440) / max(1, counts.sum())
    counts = rng.poisson(counts * scale)
    trace = {}
    for i in range(n_functions):
        minute = np.repeat(np.arange(minutes), counts[i])
        trace[f"fn-{i:02d}"] = np.sort(minute * 60.0 + rng.uniform(0, 60, len(minute)))
    return trace


def build(trace: dict[str, np.ndarray], seed: int) -> SimPlatform:
    profile = load_profile()
    measured = sorted(profile.functions)
    aliases = {name: measured[i % len(measured)] for i, name in enumerate(sorted(trace))}
    sim = SimPlatform(profile, seed=seed, function_profiles=aliases)
    for name in sorted(trace):
        sim.deploy(FunctionSpec(name=name))
    return sim


def run_lean(trace: dict[str, np.ndarray], hours: float, seed: int) -> tuple[float, SimPlatform]:
    sim = build(trace, seed)
    policy = KeepAlivePolicy(window_s=KNATIVE_WINDOW_S)
    last: dict[str, tuple[int, int, int, int]] = {}

    def on_tick(now_s: float) -> None:
        snap = sim.metrics()
        fos = {}
        for name, m in snap.functions.items():
            p = last.get(name, (0, 0, 0, 0))
            fos[name] = FunctionObservation(
                name=name,
                arrivals=m.started - p[0],
                completions=m.completed - p[1],
                errors=m.errors - p[2],
                cold_starts=m.cold_starts - p[3],
                inflight=m.inflight,
                queued=m.queued,
                replicas_ready=m.replicas_ready,
                replicas_starting=m.replicas_starting,
                target_replicas=m.replicas_ready + m.replicas_starting,
            )
            last[name] = (m.started, m.completed, m.errors, m.cold_starts)
        decision = policy.decide(Observation(now_s=now_s, tick_s=1.0, functions=fos))
        for name, fd in decision.functions.items():
            if fd.replicas is not None and fd.replicas != fos[name].target_replicas:
                sim.scale(name, replicas=fd.replicas)

    started = time.perf_counter()
    sim.run_trace(trace, hours * 3600, tick_s=1.0, on_tick=on_tick)
    return time.perf_counter() - started, sim


def run_bare(trace: dict[str, np.ndarray], hours: float, seed: int) -> float:
    """The simulator alone: ticks sample the timeline and read metrics(), nobody scales."""
    sim = build(trace, seed)
    started = time.perf_counter()
    sim.run_trace(trace, hours * 3600, tick_s=1.0, on_tick=lambda _t: sim.metrics())
    return time.perf_counter() - started


def run_daemon(trace: dict[str, np.ndarray], hours: float, seed: int) -> float:
    cut = {k: v[v < hours * 3600] for k, v in trace.items()}
    sim = build(cut, seed)
    daemon = Daemon(sim, KeepAlivePolicy(window_s=KNATIVE_WINDOW_S), clock=sim.clock, tick_s=1.0)
    started = time.perf_counter()
    sim.run_trace(cut, hours * 3600, tick_s=1.0, on_tick=lambda _t: daemon.tick())
    return time.perf_counter() - started


WORKFLOW_POLICIES = "keepalive-knative,hybrid-histogram,aquatope-prewarm,aquatope"


def workflow_arrivals(hours: float, rate_per_s: float, seed: int) -> dict[str, np.ndarray]:
    """Diurnal Poisson arrivals (peak 1.8x, trough 0.2x the mean) for both workflows."""
    rng = np.random.default_rng(seed)
    span_s = hours * 3600.0
    out = {}
    for k, name in enumerate(("ml-pipeline", "social-network")):
        n = rng.poisson(rate_per_s * 1.8 * span_s)
        t = np.sort(rng.uniform(0.0, span_s, n))
        keep = rng.uniform(0.0, 1.8, n) < 1.0 + 0.8 * np.sin(2 * np.pi * t / 86400.0 + k)
        out[name] = t[keep]
    return out


def run_workflow_day(policy: str, hours: float, rate_per_s: float, seed: int) -> dict[str, float]:
    """One policy through the daemon on both workflows; wall seconds and what it produced."""
    sim = SimPlatform(load_profile(), seed=seed)
    for name in sorted({f for wf in sim.workflows.values() for f in wf.functions}):
        sim.deploy(FunctionSpec(name=name))
    params = {"configure": False} if policy == "aquatope" else {}
    daemon = Daemon(
        sim, create_policy(policy, params), clock=sim.clock, tick_s=1.0, workflows=sim.workflows
    )
    arrivals = workflow_arrivals(hours, rate_per_s, seed)
    started, cpu0 = time.perf_counter(), time.process_time()
    res = sim.run_trace(arrivals, hours * 3600, tick_s=1.0, on_tick=lambda _t: daemon.tick())
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu0  # on a shared machine wall time includes others' work
    req = res.requests
    idle = 0.0  # replica-seconds warm or starting but serving nothing
    for _fn, part in res.timeline.sort_values(["function", "t_s"]).groupby("function"):
        t = part["t_s"].to_numpy()
        spare = (part["replicas_ready"] + part["replicas_starting"] - part["busy"]).to_numpy()
        dt = np.diff(np.append(t, hours * 3600))
        idle += float(np.sum(np.clip(spare, 0, None) * np.clip(dt, 0, None)))
    return {
        "wall_s": round(wall_s, 2),
        "wall_s_per_day": round(wall_s * 24.0 / hours, 1),
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_day": round(cpu_s * 24.0 / hours, 1),
        "requests": len(req),
        "cold_stages": int(res.stages["cold_start"].sum()),
        "qos_violations": int((req["latency_s"] > req["qos_target_s"]).sum()),
        "idle_replica_s": round(idle),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--functions", type=int, default=50)
    parser.add_argument("--per-day", type=int, default=1_000_000)
    parser.add_argument("--daemon-hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", default=WORKFLOW_POLICIES)
    parser.add_argument("--workflow-hours", type=float, default=24.0)
    parser.add_argument("--workflow-rate", type=float, default=1.0)
    parser.add_argument("--skip-azure", action="store_true", help="only the workflow days")
    args = parser.parse_args()

    per_policy: dict[str, dict[str, float]] = {}
    for policy in [p for p in args.policies.split(",") if p]:
        per_policy[policy] = run_workflow_day(
            policy, args.workflow_hours, args.workflow_rate, args.seed
        )
        print(f"workflow day, {policy}: {per_policy[policy]}")
    if args.skip_azure:
        print(json.dumps({"workflow_hours": args.workflow_hours, "per_policy": per_policy}))
        return

    trace = make_trace(args.functions, args.hours, args.per_day, args.seed)
    n = int(sum(len(v) for v in trace.values()))
    print(f"trace: {args.functions} functions, {args.hours:g} h, {n} invocations")
    lean_s, sim = run_lean(trace, args.hours, args.seed)
    started = time.perf_counter()
    results = sim.results()
    frames_s = time.perf_counter() - started
    req = results.requests
    print(
        f"sim+policy: {lean_s:.1f} s wall for {args.hours:g} h simulated "
        f"({n / lean_s:,.0f} invocations/s); {len(req)} requests, "
        f"{int(req['cold_start'].sum())} cold starts; frames {frames_s:.1f} s "
        f"({len(results.timeline)} timeline rows)"
    )
    bare_s = run_bare(trace, args.hours, args.seed)
    print(f"sim alone (metrics() every second, no policy): {bare_s:.1f} s wall")
    daemon_s = run_daemon(trace, args.daemon_hours, args.seed)
    daemon_24h = daemon_s * args.hours / args.daemon_hours
    print(
        f"sim+daemon: {daemon_s:.1f} s wall for {args.daemon_hours:g} h simulated "
        f"-> ~{daemon_24h:.0f} s for {args.hours:g} h"
    )
    print(
        json.dumps(
            {
                "functions": args.functions,
                "hours": args.hours,
                "invocations": n,
                "sim_policy_wall_s": round(lean_s, 2),
                "invocations_per_s": round(n / lean_s),
                "frames_s": round(frames_s, 2),
                "sim_alone_wall_s": round(bare_s, 2),
                "cold_starts": int(req["cold_start"].sum()),
                "daemon_hours": args.daemon_hours,
                "sim_daemon_wall_s": round(daemon_s, 2),
                "sim_daemon_extrapolated_s": round(daemon_24h, 1),
                "target_s": 60,
                "workflow_hours": args.workflow_hours,
                "per_policy": per_policy,
            }
        )
    )


if __name__ == "__main__":
    main()
