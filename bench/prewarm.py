"""Pre-warming figures: forecast calibration and accuracy, the cold-start / idle frontier, speed.

Traces come from ``loadgen.traces.synthetic`` (per-minute counts; kinds ``bursty``,
``diurnal`` with a 2-hour cycle, ``flash-crowd``), several seeds, one function each.

1. **Forecasts** (walk-forward, one-step-ahead, per-minute steps): for last value, EWMA,
   seasonal naive, the GP and the paper's hybrid Bayesian network (LSTM + MC dropout),
   empirical coverage of the raw and of the conformally calibrated 90/95/99% upper bounds
   (pooled over seeds), and the mean pinball loss over levels 0.5/0.9/0.95/0.99.
2. **Frontier** on the simulator (``testbed.sim``; service time constant 1 s,
   cold start 3 s, tick 5 s): each policy's cold starts and idle replica-seconds (replicas
   alive minus requests running, integrated over time), and requests that waited for a replica
   (latency above the constant 1 s service time: cold start or queueing), on the same trace,
   for a sweep of each policy's knob: keep-alive window, hybrid-histogram keep-alive
   percentile and range, Knative KPA scale-to-zero grace, aquatope-prewarm's idle weight. At
   equal idle replica-seconds, each baseline's cold starts (and waits) are interpolated along
   its frontier and divided by aquatope's.
3. **Workflow-awareness**: a three-stage chain on a bursty trace, with and without DAG
   propagation: cold starts of the downstream stages.
4. **Speed**: fit and update+predict time per function for each forecaster.

Usage: ``.venv/bin/python bench/prewarm.py [--seeds 3] [--minutes 180]``. Prints one line per
figure, then one JSON object on the last line.
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
from loadgen.traces.synthetic import synthesize
from scheduler.forecast import ConformalCalibrator, make_forecaster

__all__ = ["main"]

LEVELS = (0.9, 0.95, 0.99)
PINBALL_LEVELS = (0.5, 0.9, 0.95, 0.99)
KINDS = {
    "bursty": {"rate_per_min": 30.0, "on_min": 5.0, "off_min": 15.0},
    "diurnal": {"rate_per_min": 30.0, "period_min": 120.0, "amplitude": 0.8},
    "flash-crowd": {"rate_per_min": 10.0, "surge": 8.0},
}
SERVICE_S = 1.0
COLD_START_S = 3.0
TICK_S = 5.0


# Platform semantics for the simulated functions (set from --scale-on-demand).
SCALE_ON_DEMAND = False


def trace_counts(kind: str, seed: int, minutes: int) -> np.ndarray:
    """Per-minute counts of one function (1-D float array)."""
    return (
        synthesize(kind, functions=1, minutes=minutes, seed=seed, **KINDS[kind])
        .counts[0]
        .astype(np.float64)
    )


def pinball(y: float, q_pred: float, level: float) -> float:
    """Pinball (quantile) loss of predicting ``q_pred`` as the ``level``-quantile of ``y``."""
    diff = y - q_pred
    return max(level * diff, (level - 1.0) * diff)


# ----------------------------------------------------------------------------- 1. forecasts


def forecast_eval(kinds: list[str], seeds: list[int], minutes: int) -> tuple[dict, dict]:
    """Walk-forward one-step forecasts; returns (per kind x model figures, timing)."""
    models = ("last", "ewma", "seasonal", "gp", "lstm")
    start = 90  # steps of history before scoring (the LSTM needs 68 to train)
    figures: dict[str, dict[str, Any]] = {}
    timing: dict[str, dict[str, list[float]]] = {m: {"fit": [], "predict": []} for m in models}
    for kind in kinds:
        for model in models:
            raw_hits = {q: 0 for q in LEVELS}
            cal_hits = {q: 0 for q in LEVELS}
            loss: list[float] = []
            cal_loss: list[float] = []
            n = 0
            for seed in seeds:
                y = trace_counts(kind, seed, minutes)
                opts: dict[str, Any] = {"step_s": 60.0}
                if model == "seasonal":
                    opts["period_steps"] = 120 if kind == "diurnal" else 60
                if model == "gp":
                    opts.update(window=64, fit_iters=30, seed=seed)
                if model == "lstm":
                    opts.update(epochs=6, mc_samples=16, max_windows=512, seed=seed)
                fc = make_forecaster(model, **opts)
                cal = ConformalCalibrator(levels=PINBALL_LEVELS, window=120, gamma=0.01)
                refit_every = 30 if model == "gp" else (10**9 if model == "lstm" else 1)
                for t in range(start - 20, minutes - 1):
                    hist = y[None, :t]
                    t0 = time.perf_counter()
                    if (t - start + 20) % refit_every == 0:
                        fc.fit(hist, end_s=t * 60.0)
                        timing[model]["fit"].append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                    else:
                        fc.update(hist, end_s=t * 60.0)
                    out = fc.predict(1)
                    timing[model]["predict"].append(time.perf_counter() - t0)
                    mean, std = float(out.mean[0, 0]), float(out.std[0, 0])
                    if t >= start:
                        n += 1
                        for q in LEVELS:
                            raw_hits[q] += int(y[t] <= out.quantile(q)[0, 0])
                            cal_hits[q] += int(y[t] <= float(cal.upper(mean, std, q)))
                        loss.append(
                            statistics.fmean(
                                pinball(y[t], float(out.quantile(q)[0, 0]), q)
                                for q in PINBALL_LEVELS
                            )
                        )
                        cal_loss.append(
                            statistics.fmean(
                                pinball(y[t], float(cal.upper(mean, std, q)), q)
                                for q in PINBALL_LEVELS
                            )
                        )
                    cal.update(mean=mean, std=std, observed=float(y[t]))
            figures.setdefault(kind, {})[model] = {
                "n": n,
                "raw_coverage": {str(q): round(raw_hits[q] / n, 4) for q in LEVELS},
                "calibrated_coverage": {str(q): round(cal_hits[q] / n, 4) for q in LEVELS},
                "pinball": round(statistics.fmean(loss), 3),
                "pinball_calibrated": round(statistics.fmean(cal_loss), 3),
            }
            f = figures[kind][model]
            print(
                f"forecast {kind:11s} {model:8s} raw cov {f['raw_coverage']} "
                f"cal cov {f['calibrated_coverage']} pinball {f['pinball']} "
                f"(cal {f['pinball_calibrated']})"
            )
    speed = {
        m: {
            "fit_ms_median": round(1000 * statistics.median(v["fit"]), 2) if v["fit"] else None,
            "predict_ms_median": round(1000 * statistics.median(v["predict"]), 3),
            "predict_ms_p95": round(1000 * float(np.percentile(v["predict"], 95)), 3),
        }
        for m, v in timing.items()
    }
    return figures, speed


# ----------------------------------------------------------------------------- 2. frontier


def arrivals_from_counts(counts: np.ndarray, seed: int) -> np.ndarray:
    """Arrival times (s): each minute's count spread uniformly at random over the minute."""
    rng = np.random.default_rng(seed + 1000)
    parts = [m * 60.0 + rng.uniform(0.0, 60.0, int(c)) for m, c in enumerate(counts) if c > 0]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0)


def sim_run(
    policy: str,
    params: dict[str, Any],
    arrivals: dict[str, np.ndarray],
    until_s: float,
    *,
    functions: tuple[str, ...] = ("f",),
    workflows: list[Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Replay on the simulator under ``policy``; cold starts, idle replica-s, latency, time."""
    from scheduler.daemon import Daemon
    from scheduler.registry import create_policy
    from testbed.core.platform import FunctionSpec
    from testbed.sim.distributions import Distribution
    from testbed.sim.platform import SimPlatform
    from testbed.sim.profile import FunctionProfile, Profile

    fp = FunctionProfile(
        service_s=Distribution.constant(SERVICE_S),
        cold_start_s=Distribution.constant(COLD_START_S),
    )
    sim = SimPlatform(Profile(functions={f: fp for f in functions}), seed=seed, workflows=workflows)
    labels = {"com.openfaas.scale.max": "50"}
    if SCALE_ON_DEMAND:
        labels["com.aquatope.scale-on-demand"] = "true"
    for f in functions:
        sim.deploy(FunctionSpec(name=f, labels=labels))
    pol = create_policy(policy, params)
    daemon = Daemon(sim, pol, clock=sim.clock, tick_s=TICK_S, workflows=sim.workflows)
    decide_s: list[float] = []

    def tick(_t: float) -> None:
        t0 = time.perf_counter()
        daemon.tick()
        decide_s.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    res = sim.run_trace(arrivals, until_s=until_s, tick_s=TICK_S, on_tick=tick)
    wall_s = time.perf_counter() - t0
    tl = res.timeline.sort_values(["function", "t_s"])
    idle = 0.0
    per_fn_idle: dict[str, float] = {}
    for fn, part in tl.groupby("function"):
        t = part["t_s"].to_numpy()
        alive = (part["replicas_ready"] + part["replicas_starting"] - part["busy"]).to_numpy()
        dt = np.diff(np.append(t, until_s))
        per_fn_idle[str(fn)] = float(np.sum(np.clip(alive, 0, None) * np.clip(dt, 0, None)))
        idle += per_fn_idle[str(fn)]
    stages = res.stages
    cold_by_fn = (
        {str(k): int(v) for k, v in stages.groupby("function")["cold_start"].sum().items()}
        if len(stages)
        else {}
    )
    req = res.requests
    stage_count = len(functions) if workflows else 1
    # constant service time: a request slower than its stages' service waited for a replica
    waited = int((req["latency_s"] > stage_count * SERVICE_S + 1e-6).sum())
    return {
        "cold_starts": int(req["cold_stages"].sum()),
        "waited": waited,
        "cold_by_function": cold_by_fn,
        "idle_replica_s": round(idle, 1),
        "idle_by_function": {k: round(v, 1) for k, v in per_fn_idle.items()},
        "requests": len(req),
        "p99_latency_s": round(float(np.percentile(req["latency_s"], 99)), 3) if len(req) else 0,
        "wall_s": round(wall_s, 2),
        "decide_ms_median": round(1000 * statistics.median(decide_s), 3),
    }


AQUATOPE: dict[str, Any] = {
    "forecaster": "gp",
    "step_s": 30.0,
    "refit_every_steps": 20,
    "cold_start_s": COLD_START_S,
    "service_s": SERVICE_S,
}
SWEEPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "keep-alive": [("keep-alive", {"window_s": w}) for w in (60.0, 600.0, 1800.0, 3600.0, 10800.0)],
    "hybrid-histogram": [
        ("hybrid-histogram", {"tail_percentile": p, "range_s": r})
        for p, r in ((75.0, 3600.0), (90.0, 3600.0), (99.0, 3600.0), (99.0, 14400.0))
    ],
    "knative-kpa": [
        ("knative-kpa", {"scale_to_zero_grace_s": g}) for g in (30.0, 600.0, 1800.0, 10800.0)
    ],
    "aquatope-prewarm": [
        ("aquatope-prewarm", {**AQUATOPE, "miss_price_s": p})
        for p in (10.0, 60.0, 600.0, 6000.0, 60000.0)
    ],
    "aquatope-prewarm[paper]": [
        ("aquatope-prewarm", {**AQUATOPE, "forecaster": "lstm-paper", "paper_level": q})
        for q in (0.9, 0.95, 0.99)
    ],
}
OURS = ("aquatope-prewarm", "aquatope-prewarm[paper]")
BASELINES = ("keep-alive", "hybrid-histogram", "knative-kpa")


def interp_cold(frontier: list[tuple[float, float]], idle: float) -> tuple[float, bool]:
    """Cold starts of a frontier at ``idle`` replica-s (lower envelope, linear between points).

    Returns:
        (cold starts, True when ``idle`` lies inside the frontier's range).
    """
    pts = sorted(frontier)
    envelope: list[tuple[float, float]] = []
    best = float("inf")
    for x, y in pts:  # Pareto: more idle must buy fewer cold starts
        if y < best:
            envelope.append((x, y))
            best = y
    xs = [p[0] for p in envelope]
    ys = [p[1] for p in envelope]
    inside = xs[0] <= idle <= xs[-1]
    return float(np.interp(idle, xs, ys)), inside


def frontier_eval(kinds: list[str], seeds: list[int], minutes: int) -> dict[str, Any]:
    """Cold starts vs idle replica-seconds per policy and knob; ratios at equal idle."""
    out: dict[str, Any] = {}
    for kind in kinds:
        points: dict[str, list[dict[str, Any]]] = {}
        for name, sweep in SWEEPS.items():
            for policy, params in sweep:
                total = {
                    "cold_starts": 0,
                    "waited": 0,
                    "idle_replica_s": 0.0,
                    "requests": 0,
                    "wall_s": 0.0,
                }
                p99: list[float] = []
                decide: list[float] = []
                for seed in seeds:
                    arrivals = {"f": arrivals_from_counts(trace_counts(kind, seed, minutes), seed)}
                    r = sim_run(policy, params, arrivals, minutes * 60.0, seed=seed)
                    for key in total:
                        total[key] += r[key]
                    p99.append(r["p99_latency_s"])
                    decide.append(r["decide_ms_median"])
                knob = {
                    k: v
                    for k, v in params.items()
                    if k in ("window_s", "miss_price_s", "paper_level", "scale_to_zero_grace_s")
                }
                knob.update(
                    {k: v for k, v in params.items() if k in ("tail_percentile", "range_s")}
                )
                point = {
                    "knob": knob,
                    "cold_starts": total["cold_starts"],
                    "waited": total["waited"],
                    "idle_replica_s": round(total["idle_replica_s"], 1),
                    "requests": total["requests"],
                    "p99_latency_s_mean": round(statistics.fmean(p99), 3),
                    "decide_ms_median": round(statistics.median(decide), 3),
                    "wall_s": round(total["wall_s"], 1),
                }
                points.setdefault(name, []).append(point)
                print(
                    f"frontier {kind:11s} {name:17s} {knob} cold {point['cold_starts']} "
                    f"waited {point['waited']} "
                    f"idle {point['idle_replica_s']:.0f} replica-s p99 "
                    f"{point['p99_latency_s_mean']}s ({point['wall_s']}s wall)"
                )
        ratios: dict[str, list[dict[str, Any]]] = {}
        for ours in OURS:
            for base in BASELINES:
                for metric in ("cold_starts", "waited"):
                    frontier = [(p["idle_replica_s"], p[metric]) for p in points[base]]
                    for p in points[ours]:
                        base_at, inside = interp_cold(frontier, p["idle_replica_s"])
                        ratio = base_at / max(p[metric], 1)
                        ratios.setdefault(f"{ours} vs {base}:{metric}", []).append(
                            {
                                "knob": p["knob"],
                                "idle_replica_s": p["idle_replica_s"],
                                "ours": p[metric],
                                "baseline_at_equal_idle": round(base_at, 1),
                                "ratio": round(ratio, 2),
                                "inside_baseline_range": inside,
                            }
                        )
                        print(
                            f"ratio     {kind} {ours} vs {base} {metric} at idle "
                            f"{p['idle_replica_s']:.0f}: {base_at:.1f} / {p[metric]} = "
                            f"{ratio:.2f}x"
                            + ("" if inside else " (outside the baseline's idle range)")
                        )
        # dominance: the baseline's best cold starts among its configurations that spend at
        # least as much idle time as ours (None: it never spends that much)
        dominance: dict[str, list[dict[str, Any]]] = {}
        for ours in OURS:
            for base in BASELINES:
                for p in points[ours]:
                    richer = [b for b in points[base] if b["idle_replica_s"] >= p["idle_replica_s"]]
                    best_b = min((b["cold_starts"] for b in richer), default=None)
                    dominance.setdefault(f"{ours} vs {base}", []).append(
                        {
                            "knob": p["knob"],
                            "idle_replica_s": p["idle_replica_s"],
                            "ours_cold": p["cold_starts"],
                            "baseline_best_cold_with_more_idle": best_b,
                            "ratio": None
                            if best_b is None
                            else round(best_b / max(p["cold_starts"], 1), 2),
                            "baseline_min_idle_replica_s": min(
                                b["idle_replica_s"] for b in points[base]
                            ),
                            "baseline_max_idle_replica_s": max(
                                b["idle_replica_s"] for b in points[base]
                            ),
                        }
                    )
        out[kind] = {"points": points, "ratios_at_equal_idle": ratios, "dominance": dominance}
    return out


# ----------------------------------------------------------------------------- 3. DAG


def dag_eval(seeds: list[int], minutes: int) -> dict[str, Any]:
    """Three-stage chain on a bursty trace: downstream cold starts with and without the DAG."""
    from testbed.core.platform import QoS, Stage, Workflow

    wf = Workflow(
        name="chain",
        qos=QoS(target_s=10.0),
        stages=(
            Stage("a", "entry"),
            Stage("b", "mid", after=("a",)),
            Stage("c", "leaf", after=("b",)),
        ),
    )
    out: dict[str, Any] = {}
    for dag in (True, False):
        cold = {"entry": 0, "mid": 0, "leaf": 0}
        idle = 0.0
        for seed in seeds:
            counts = trace_counts("bursty", seed, minutes)
            r = sim_run(
                "aquatope-prewarm",
                {
                    "forecaster": "gp",
                    "step_s": 30.0,
                    "refit_every_steps": 20,
                    "dag": dag,
                    "cold_start_s": COLD_START_S,
                    "service_s": SERVICE_S,
                },
                {"chain": arrivals_from_counts(counts, seed)},
                minutes * 60.0,
                functions=("entry", "mid", "leaf"),
                workflows=[wf],
                seed=seed,
            )
            for fn in cold:
                cold[fn] += r["cold_by_function"].get(fn, 0)
            idle += r["idle_replica_s"]
        key = "dag" if dag else "no_dag"
        out[key] = {"cold_by_function": cold, "idle_replica_s": round(idle, 1)}
        print(f"dag       chain bursty {key:6s} cold {cold} idle {idle:.0f} replica-s")
    return out


def main() -> None:
    """Run every part and print the JSON figures last."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=int, default=180, help="frontier trace length")
    parser.add_argument("--forecast-minutes", type=int, default=360)
    parser.add_argument("--frontier-kinds", default="bursty")
    parser.add_argument("--parts", default="forecast,frontier,dag")
    parser.add_argument(
        "--scale-on-demand",
        action="store_true",
        help="Lambda/OpenWhisk platform semantics: busy pools grow per request instead of "
        "queueing (label com.aquatope.scale-on-demand), so keep-alive baselines scale out",
    )
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    global SCALE_ON_DEMAND
    SCALE_ON_DEMAND = args.scale_on_demand
    t0 = time.perf_counter()
    parts = set(args.parts.split(","))
    forecasts: dict[str, Any] = {}
    speed: dict[str, Any] = {}
    if "forecast" in parts:
        forecasts, speed = forecast_eval(list(KINDS), seeds, args.forecast_minutes)
        for model, s in speed.items():
            print(f"speed     {model:8s} {s}")
    frontier = (
        frontier_eval(args.frontier_kinds.split(","), seeds, args.minutes)
        if "frontier" in parts
        else {}
    )
    dag = dag_eval(seeds[:1], args.minutes) if "dag" in parts else {}
    cov_ok = all(
        abs(fig["calibrated_coverage"][str(q)] - q) <= 0.03
        for per_kind in forecasts.values()
        for fig in per_kind.values()
        for q in LEVELS
    )
    bursty = frontier.get("bursty", {}).get("ratios_at_equal_idle", {})
    best = {
        key: max((r["ratio"] for r in rs if r["inside_baseline_range"]), default=None)
        for key, rs in bursty.items()
    }
    figures = {
        "bench": "prewarm",
        "machine": machine(),
        "seeds": seeds,
        "minutes": args.minutes,
        "scale_on_demand": SCALE_ON_DEMAND,
        "forecast_minutes": args.forecast_minutes,
        "sim": {"service_s_mean": SERVICE_S, "cold_start_s": COLD_START_S, "tick_s": TICK_S},
        "forecasts": forecasts,
        "speed": speed,
        "frontier": frontier,
        "dag": dag,
        "targets": {
            "calibrated_coverage_within_3pts": cov_ok,
            "best_ratio_at_equal_idle_bursty_inside_range": best,
            "gp_predict_under_5ms": speed["gp"]["predict_ms_median"] < 5.0 if speed else None,
            "lstm_predict_under_5ms": speed["lstm"]["predict_ms_median"] < 5.0 if speed else None,
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    emit(figures)


if __name__ == "__main__":
    main()
