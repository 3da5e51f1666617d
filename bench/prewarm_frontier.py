"""Pre-warm frontiers: cold starts and QoS violations vs idle replica-seconds, per trace kind.

On the simulator (``SimPlatform`` with the shipped reference profile, functions scale out on
demand like Lambda/OpenWhisk), the four workflows of both applications (``ml-pipeline`` and
the three social-network workflows) each get their own arrival process of one trace kind
from ``loadgen.traces.synthetic``:

* ``timers``: strictly periodic timers (period 2-8 minutes, own phase, same second of the
  minute every time);
* ``diurnal``: Poisson arrivals with a one-hour cycle;
* ``bursty``: memoryless on/off bursts (exponential on and off periods: not predictable);
* ``azure-like``: heavy-tailed rates, timers, bursts and cycles as in the Azure 2019 trace
  (12 functions, three per workflow, rates capped at ~30 per minute).

Each policy's knob is swept into a curve: keep-alive window (per-replica expiry),
hybrid-histogram tail percentile and range, static pool size, aquatope-prewarm's
``miss_price_s`` (10-30,000 idle replica-s per QoS miss) and the oracle's idle budget (it
is handed the trace). The first
``--train-minutes`` of every run are never scored (policies learn online there; the
first ``--ramp-minutes`` of cold starts, paid before any policy could have learnt, are
reported apart). Per trace kind one JSON line: per policy and knob the mean over seeds and
95 % interval (Student t) of scored cold starts, QoS violations (failed or slower than the
workflow's QoS target), idle replica-seconds (replicas ready or starting minus those busy,
integrated over the scored period) and ramp-up cold starts; per policy the area between its
lower envelope and the oracle's over their common idle range (and that area divided by the
range: the mean cold-start gap); and cold-start ratios at equal idle (linear interpolation
along the other curve's lower envelope), per seed then averaged with a 95 % interval.

Usage: ``PYTHONPATH=$PWD .venv/bin/python bench/prewarm_frontier.py [--seeds 3]
[--minutes 40] [--train-minutes 20] [--kinds timers,bursty] [--jobs 1] [--plot out.png]``.
Prints progress lines, then one JSON line per trace kind (the last line is the last kind).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine
from loadgen.traces.synthetic import AzureLikeParams, synthesize
from testbed.report.frontier import area_between, envelope_at

__all__ = ["main"]

TARGETS = ("ml-pipeline", "social-compose-post", "social-read-home", "social-read-user")
KINDS: dict[str, dict[str, Any]] = {
    "timers": {"period_min": (2, 8)},
    "diurnal": {"rate_per_min": 4.0, "period_min": 60.0, "amplitude": 0.9},
    "bursty": {"rate_per_min": 4.0, "on_min": 3.0, "off_min": 9.0},
    "azure-like": {"params": AzureLikeParams(log10_rate_max=1.5)},
}
ROWS_PER_TARGET = {"azure-like": 3, "timers": 3}
TICK_S = 2.0
HOLD_S = 1.0  # the oracle: one workflow call holds a stage's replica this long at most

SWEEPS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "keep-alive": (
        "keep-alive",
        [{"window_s": w} for w in (10.0, 30.0, 60.0, 180.0, 600.0, 1800.0)],
    ),
    "hybrid-histogram": (
        "hybrid-histogram",
        [
            {"tail_percentile": p, "range_s": r}
            for p, r in ((50.0, 1800.0), (90.0, 3600.0), (99.0, 3600.0), (99.0, 14400.0))
        ],
    ),
    "static-pool": ("static-pool", [{"replicas": n} for n in (0, 1, 2)]),
    "aquatope-prewarm": (
        "aquatope-prewarm",
        [{"miss_price_s": w} for w in (10.0, 60.0, 300.0, 600.0, 3000.0, 30000.0)],
    ),  # plus AQUATOPE_EXTRA where the policy takes those parameters
    "oracle": ("oracle", [{"budget_share": s} for s in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)]),
}
REFERENCE = "oracle"
# the GP refitted every 20 steps of 30 s, as in bench/prewarm.py (cheap enough to sweep)
AQUATOPE_EXTRA = {"forecaster": "gp", "step_s": 30.0, "refit_every_steps": 20}


# ----------------------------------------------------------------------------- traces


def make_trace(kind: str, seed: int, minutes: int) -> dict[str, np.ndarray]:
    """Arrival times (s) per workflow for one seed: each minute's calls placed in it."""
    rows = ROWS_PER_TARGET.get(kind, 1)
    counts = synthesize(
        kind, functions=rows * len(TARGETS), minutes=minutes, seed=seed, **KINDS[kind]
    ).counts
    rng = np.random.default_rng(seed + 7919)
    out: dict[str, np.ndarray] = {}
    for i, target in enumerate(TARGETS):
        parts = []
        for row in counts[i :: len(TARGETS)][:rows]:
            offset_s = float(rng.uniform(0.0, 60.0))  # a timer fires at the same second
            for minute in np.flatnonzero(row):
                n = int(row[minute])
                if kind == "timers":
                    parts.append(np.full(n, minute * 60.0 + offset_s))
                else:
                    parts.append(minute * 60.0 + rng.uniform(0.0, 60.0, n))
        out[target] = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
    return out


# ----------------------------------------------------------------------------- one run


def _leads_s(profile: Any) -> dict[str, float]:
    """Per function, an upper bound of its cold start (largest profile sample, plus 10 %)."""
    out = {}
    for name, fp in profile.functions.items():
        dist = fp.cold_start_s
        samples = list(getattr(dist, "samples", ()) or ())
        worst = max(samples) if samples else float(getattr(dist, "value_s", 0.0))
        out[name] = 1.1 * worst
    return out


def run_one(job: tuple[str, str, dict[str, Any], int, int, int, int]) -> dict[str, Any]:
    """Simulate one (kind, policy, knob, seed); scored figures of the run."""
    kind, policy, knob, seed, minutes, train_minutes, ramp_minutes = job
    from scheduler.daemon import Daemon
    from scheduler.policies.oracle import OraclePolicy
    from scheduler.registry import available_policies, create_policy
    from testbed.core.platform import LABEL_SCALE_MAX, LABEL_SCALE_ON_DEMAND, FunctionSpec
    from testbed.sim.platform import SimPlatform

    total_min = train_minutes + minutes
    arrivals = make_trace(kind, seed, total_min)
    until_s = total_min * 60.0
    train_s = train_minutes * 60.0
    sim = SimPlatform(None, seed=seed)
    functions = list(dict.fromkeys(f for t in TARGETS for f in sim.workflows[t].functions))
    labels = {LABEL_SCALE_ON_DEMAND: "true", LABEL_SCALE_MAX: "50"}
    for f in functions:
        sim.deploy(FunctionSpec(name=f, labels=labels))
    params = dict(knob)
    if policy == "oracle":
        share = float(params.pop("budget_share"))
        leads = _leads_s(sim.profile)
        opts = {
            "arrivals": arrivals,
            "lead_s": max(leads.values()),
            "lead_s_by_function": leads,
            "hold_s": HOLD_S,
        }
        total_cost_s = OraclePolicy(**opts).planned_cost_s(sim.workflows, TICK_S)
        params.update(opts, idle_budget_s=share * total_cost_s)
    if policy == "aquatope-prewarm":
        known = available_policies()[policy].parameters
        params.update({k: v for k, v in AQUATOPE_EXTRA.items() if k in known})
    pol = create_policy(policy, params)
    daemon = Daemon(sim, pol, clock=sim.clock, tick_s=TICK_S, workflows=sim.workflows)
    decide_s: list[float] = []

    def tick(_t: float) -> None:
        t0 = time.perf_counter()
        daemon.tick()
        decide_s.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    res = sim.run_trace(arrivals, until_s, tick_s=TICK_S, on_tick=tick)
    wall_s = time.perf_counter() - t0
    req = res.requests
    scored = req[req["intended_s"] >= train_s]
    violated = (~scored["ok"]) | (scored["latency_s"] > scored["qos_target_s"])
    ramp = req[req["intended_s"] < ramp_minutes * 60.0]
    tl = res.timeline.sort_values(["function", "t_s"])
    idle = 0.0
    for _fn, part in tl.groupby("function"):
        t = part["t_s"].to_numpy()
        alive = (part["replicas_ready"] + part["replicas_starting"] - part["busy"]).to_numpy()
        start = np.clip(t, train_s, until_s)
        end = np.clip(np.append(t[1:], until_s), train_s, until_s)
        idle += float(np.sum(np.clip(alive, 0, None) * (end - start)))
    return {
        "kind": kind,
        "policy": policy,
        "knob": knob,
        "seed": seed,
        "requests": len(scored),
        "cold_starts": int(scored["cold_stages"].sum()),
        "qos_violations": int(violated.sum()),
        "idle_replica_s": idle,
        "ramp_cold_starts": int(ramp["cold_stages"].sum()),
        "wall_s": wall_s,
        "decide_ms_median": 1000 * statistics.median(decide_s) if decide_s else 0.0,
    }


# ----------------------------------------------------------------------------- statistics

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}
_T975.update({9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042})


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95 % Student-t half-width over seeds (None with one value)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "ci95": None, "n": 0}
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return {"mean": round(mean, 3), "ci95": None, "n": 1}
    dof = len(vals) - 1
    t = _T975.get(dof) or _T975[max(k for k in _T975 if k <= dof)]
    half = t * statistics.stdev(vals) / math.sqrt(len(vals))
    return {"mean": round(mean, 3), "ci95": round(half, 3), "n": len(vals)}


def summarise(kind: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """One kind's JSON figures from its runs."""
    seeds = sorted({r["seed"] for r in rows})
    by: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for r in rows:
        key = json.dumps(r["knob"], sort_keys=True)
        by.setdefault(r["policy"], {}).setdefault(key, {})[r["seed"]] = r
    points: dict[str, list[dict[str, Any]]] = {}
    for policy, knobs in by.items():
        for key, per_seed in knobs.items():
            runs = list(per_seed.values())
            points.setdefault(policy, []).append(
                {
                    "knob": json.loads(key),
                    **{
                        m: mean_ci([r[m] for r in runs])
                        for m in (
                            "cold_starts",
                            "qos_violations",
                            "idle_replica_s",
                            "ramp_cold_starts",
                        )
                    },
                    "requests": round(statistics.fmean(r["requests"] for r in runs), 1),
                    "decide_ms_median": round(
                        statistics.median(r["decide_ms_median"] for r in runs), 3
                    ),
                }
            )

    def curve(policy: str, seed: int, metric: str) -> list[tuple[float, float]]:
        return [
            (per_seed[seed]["idle_replica_s"], per_seed[seed][metric])
            for per_seed in by.get(policy, {}).values()
            if seed in per_seed
        ]

    gaps: dict[str, Any] = {}
    for policy in by:
        if policy == REFERENCE or REFERENCE not in by:
            continue
        for metric in ("cold_starts", "qos_violations"):
            areas, means = [], []
            for seed in seeds:
                got = area_between(curve(policy, seed, metric), curve(REFERENCE, seed, metric))
                if got is not None:
                    areas.append(got[0])
                    means.append(got[1])
            gaps.setdefault(policy, {})[metric] = {
                "area": mean_ci(areas),
                "mean_gap": mean_ci(means),
            }
    # each policy's cold starts minus the oracle's at the policy's idle (oracle interpolated)
    vs_oracle: dict[str, list[dict[str, Any]]] = {}
    # each baseline's cold starts at aquatope-prewarm's idle, over aquatope-prewarm's
    vs_aquatope: dict[str, list[dict[str, Any]]] = {}
    for policy in by:
        if REFERENCE in by and policy != REFERENCE:
            vs_oracle[policy] = _ratios(
                by[policy], lambda s: curve(REFERENCE, s, "cold_starts"), excess=True
            )
        if "aquatope-prewarm" in by and policy not in (REFERENCE, "aquatope-prewarm"):
            vs_aquatope[policy] = _ratios(
                by["aquatope-prewarm"],
                lambda s, p=policy: curve(p, s, "cold_starts"),
                invert=True,
            )
    return {
        "bench": "prewarm_frontier",
        "kind": kind,
        "seeds": len(seeds),
        "minutes_scored": args.minutes,
        "train_minutes": args.train_minutes,
        "ramp_minutes": args.ramp_minutes,
        "tick_s": TICK_S,
        "workflows": list(TARGETS),
        "points": points,
        "gap_to_oracle": gaps,
        "cold_excess_over_oracle_at_equal_idle": vs_oracle,
        "baseline_cold_over_aquatope_at_equal_idle": vs_aquatope,
        "wall_s": round(sum(r["wall_s"] for r in rows), 1),
        "machine": machine(),
    }


def _ratios(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]],
    other: Any,
    *,
    invert: bool = False,
    excess: bool = False,
) -> list[dict[str, Any]]:
    """Per knob of ``runs``: its cold starts over ``other(seed)``'s envelope at its idle
    (``invert``: the other's over its; ``excess``: its minus the other's), per seed, then
    mean and 95 % interval. A seed where the other curve never spends that little idle is
    left out (``n`` says how many stay)."""
    out = []
    for key, per_seed in runs.items():
        vals = []
        for seed, r in per_seed.items():
            at = envelope_at(other(seed), r["idle_replica_s"])
            if at is None:
                continue
            own = float(r["cold_starts"])
            if excess:
                vals.append(own - at)
            else:
                vals.append(at / max(own, 1.0) if invert else own / max(at, 1.0))
        out.append({"knob": json.loads(key), "excess" if excess else "ratio": mean_ci(vals)})
    return out


def plot(figures: Mapping[str, dict[str, Any]], path: str) -> None:
    """Cold starts vs idle replica-seconds, one panel per trace kind (means over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 4), squeeze=False)
    for ax, (kind, fig_kind) in zip(axes[0], figures.items(), strict=True):
        for policy, pts in fig_kind["points"].items():
            xy = sorted((p["idle_replica_s"]["mean"], p["cold_starts"]["mean"]) for p in pts)
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=policy)
        ax.set_xscale("symlog", linthresh=100)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(kind)
        ax.set_xlabel("idle replica-seconds (scored)")
        ax.set_ylabel("cold starts (scored)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=int, default=40, help="scored trace minutes")
    parser.add_argument("--train-minutes", type=int, default=20, help="unscored, first")
    parser.add_argument("--ramp-minutes", type=int, default=5)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--policies", default=",".join(SWEEPS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--plot", default=None, help="write a PNG of the frontiers here")
    parser.add_argument(
        "--aquatope-prices", default=None, help="comma-separated miss_price_s values"
    )
    parser.add_argument("--save-rows", default=None, help="append each run's row (JSON lines)")
    parser.add_argument(
        "--load-rows", action="append", default=[], help="rows of earlier runs to include"
    )
    parser.add_argument(
        "--no-run", action="store_true", help="only summarise the rows of --load-rows"
    )
    args = parser.parse_args(argv)
    sweeps = dict(SWEEPS)
    if args.aquatope_prices:
        prices = [float(w) for w in args.aquatope_prices.split(",")]
        sweeps["aquatope-prewarm"] = ("aquatope-prewarm", [{"miss_price_s": w} for w in prices])
    kinds = [k for k in args.kinds.split(",") if k]
    policies = [p for p in args.policies.split(",") if p]
    for name in kinds:
        if name not in KINDS:
            parser.error(f"--kinds: unknown kind {name!r}; one of {', '.join(KINDS)}")
    for name in policies:
        if name not in sweeps:
            parser.error(f"--policies: unknown policy {name!r}; one of {', '.join(sweeps)}")
    rows: list[dict[str, Any]] = []
    for path in args.load_rows:
        with open(path) as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    done = {
        (r["kind"], r["policy"], json.dumps(r["knob"], sort_keys=True), r["seed"]) for r in rows
    }
    jobs = [
        (kind, sweeps[p][0], knob, seed, args.minutes, args.train_minutes, args.ramp_minutes)
        for kind in kinds
        for p in policies
        for knob in sweeps[p][1]
        for seed in range(args.seeds)
        if (kind, sweeps[p][0], json.dumps(knob, sort_keys=True), seed) not in done
        and not args.no_run
    ]
    save = open(args.save_rows, "a") if args.save_rows else None  # noqa: SIM115
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for r in pool.imap_unordered(run_one, jobs):
                rows.append(r)
                _progress(r, save)
    else:
        for job in jobs:
            r = run_one(job)
            rows.append(r)
            _progress(r, save)
    if save is not None:
        save.close()
    kinds = [k for k in kinds if any(r["kind"] == k for r in rows)]
    figures = {}
    for kind in kinds:
        figures[kind] = summarise(kind, [r for r in rows if r["kind"] == kind], args)
    if args.plot:
        plot(figures, args.plot)
    for kind in kinds:
        print(json.dumps(figures[kind], sort_keys=True))


def _progress(r: Mapping[str, Any], save: Any) -> None:
    if save is not None:
        save.write(json.dumps(r, sort_keys=True) + "\n")
        save.flush()
    print(
        f"{r['kind']:10s} {r['policy']:17s} {json.dumps(r['knob']):40s} seed {r['seed']} "
        f"cold {r['cold_starts']:4d} qos {r['qos_violations']:4d} idle "
        f"{r['idle_replica_s']:9.0f} ramp {r['ramp_cold_starts']:3d} req {r['requests']:5d} "
        f"({r['wall_s']:.1f}s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
