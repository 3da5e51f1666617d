"""The one definition of every metric a report shows (DESIGN.md §8), computed from results files.

For one run, over the measured window (requests whose *intended* send time is at or after the
warm-up, resources between the warm-up and the end of the trace):

* **QoS violation rate**: share of requests whose end-to-end latency exceeds their workflow's
  target (``qos_target_s``), plus every request that failed (non-2xx, transport error,
  timeout). A request without a target counts only when it fails.
* **Cold-start rate**: share of requests that met at least one cold start (counted once per
  request, however many stages were cold), and per function the share of its calls that were
  cold (from ``stages.csv``; plain function requests count as one call).
* **Latency** p50/p95/p99 of all requests (failed ones at the latency they took to fail),
  end-to-end per workflow and per stage (``workflow/stage``). Percentiles interpolate linearly.
* **Cost** and **wasted memory time**: :mod:`testbed.report.cost`.
* **Scheduler overhead**: wall time per policy decision (``decide_s`` in ``decisions.jsonl``)
  and CPU seconds of the daemon thread (``scheduler_cpu_s`` in ``meta.json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from testbed.experiment.results import RunData
from testbed.report.cost import CostBreakdown, compute_cost

__all__ = [
    "HEADLINE",
    "PERCENTILES",
    "Headline",
    "RunMetrics",
    "compute_metrics",
    "demand_vs_replicas",
    "measured_requests",
    "percentiles",
    "violation_mask",
    "violations_over_time",
]

PERCENTILES = (50.0, 95.0, 99.0)


def percentiles(
    values: np.ndarray | pd.Series, qs: Sequence[float] = PERCENTILES
) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` (NaN when there are no values)."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {f"p{q:g}": math.nan for q in qs}
    got = np.percentile(arr, list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, got, strict=True)}


def measured_requests(run: RunData) -> pd.DataFrame:
    """Requests in the measured window: intended send time at or after the warm-up."""
    req = run.requests
    if run.warmup_s > 0:
        req = req[req["intended_s"].fillna(req["sent_s"]) >= run.warmup_s]
    return req


def violation_mask(requests: pd.DataFrame) -> np.ndarray:
    """True for each request that violated QoS: failed, or slower than its target."""
    latency = requests["latency_s"].to_numpy(dtype="float64")
    target = requests["qos_target_s"].to_numpy(dtype="float64")
    ok = requests["ok"].to_numpy(dtype=bool)
    with np.errstate(invalid="ignore"):
        slow = ~np.isnan(target) & ((latency > target) | np.isnan(latency))
    return np.asarray(~ok | slow)


@dataclass(frozen=True)
class RunMetrics:
    """Every metric of one run. Rates are fractions (0..1); times in seconds.

    ``order`` is the policy's position in the experiment config (for table order).
    """

    label: str
    seed: int
    path: str
    requests: int
    violations: int
    errors: int
    qos_violation_rate: float
    error_rate: float
    cold_start_rate: float
    latency_s: dict[str, float]
    cost: CostBreakdown
    decisions: int
    decide_mean_s: float
    decide_p99_s: float
    scheduler_cpu_s: float
    by_workflow: dict[str, dict[str, float]] = field(default_factory=dict)
    cold_start_rate_by_function: dict[str, float] = field(default_factory=dict)
    stage_latency_s: dict[str, dict[str, float]] = field(default_factory=dict)
    order: int = 0

    @property
    def wasted_memory_gib_s(self) -> float:
        return self.cost.wasted_memory_gib_s

    def headline(self) -> dict[str, float]:
        """The scalars every comparison table shows, by :data:`HEADLINE` key."""
        return {h.key: h.value(self) for h in HEADLINE}


@dataclass(frozen=True)
class Headline:
    """One column of the comparison: key, title, unit shown, how to read it off a run."""

    key: str
    title: str
    fmt: str
    lower_is_better: bool = True

    def value(self, m: RunMetrics) -> float:
        return float(_HEADLINE_GETTERS[self.key](m))


_HEADLINE_GETTERS = {
    "qos_violation_pct": lambda m: 100.0 * m.qos_violation_rate,
    "cold_start_pct": lambda m: 100.0 * m.cold_start_rate,
    "p50_ms": lambda m: 1000.0 * m.latency_s["p50"],
    "p95_ms": lambda m: 1000.0 * m.latency_s["p95"],
    "p99_ms": lambda m: 1000.0 * m.latency_s["p99"],
    "cost_decoupled_musd": lambda m: 1e6 * m.cost.decoupled_usd,
    "cost_lambda_musd": lambda m: 1e6 * m.cost.lambda_usd,
    "wasted_memory_gib_s": lambda m: m.wasted_memory_gib_s,
    "decide_ms": lambda m: 1000.0 * m.decide_mean_s,
    "scheduler_cpu_s": lambda m: m.scheduler_cpu_s,
}

HEADLINE: tuple[Headline, ...] = (
    Headline("qos_violation_pct", "QoS viol. %", "{:.2f}"),
    Headline("cold_start_pct", "cold %", "{:.2f}"),
    Headline("p50_ms", "p50 ms", "{:.0f}"),
    Headline("p95_ms", "p95 ms", "{:.0f}"),
    Headline("p99_ms", "p99 ms", "{:.0f}"),
    Headline("cost_decoupled_musd", "cost dec. µ$", "{:.1f}"),
    Headline("cost_lambda_musd", "cost λ µ$", "{:.1f}"),
    Headline("wasted_memory_gib_s", "wasted GiB·s", "{:.1f}"),
    Headline("decide_ms", "decide ms", "{:.2f}"),
    Headline("scheduler_cpu_s", "sched CPU s", "{:.2f}"),
)


def _window_end(run: RunData, req: pd.DataFrame) -> float:
    if run.duration_s is not None:
        return run.duration_s
    candidates = [run.timeline["t_s"].max() if not run.timeline.empty else math.nan]
    if not req.empty:
        candidates.append(float(req["end_s"].max()))
    finite = [c for c in candidates if c == c]
    return float(max(finite)) if finite else run.warmup_s


def _invocations(req: pd.DataFrame, stages: pd.DataFrame) -> int:
    plain = int((req["kind"] == "function").sum())
    return plain + len(stages)


def _stages_in_window(run: RunData, req: pd.DataFrame) -> pd.DataFrame:
    stages = run.stages
    if stages.empty or run.warmup_s <= 0:
        return stages
    return stages[stages["request_id"].isin(req["request_id"])]


def _cold_by_function(req: pd.DataFrame, stages: pd.DataFrame) -> dict[str, float]:
    calls = stages[["function", "cold_start"]]
    plain = req[req["kind"] == "function"]
    if not plain.empty:
        calls = pd.concat(
            [
                calls,
                pd.DataFrame({"function": plain["workflow"], "cold_start": plain["cold_start"]}),
            ]
        )
    if calls.empty:
        return {}
    means = calls.groupby("function", observed=True)["cold_start"].mean()
    return {str(k): float(v) for k, v in means.items()}


def _stage_latency(req: pd.DataFrame, stages: pd.DataFrame) -> dict[str, dict[str, float]]:
    if stages.empty:
        return {}
    workflows = req["workflow"].astype("category")
    row = pd.Index(req["request_id"].to_numpy()).get_indexer(stages["request_id"].to_numpy())
    codes = np.where(row >= 0, workflows.cat.codes.to_numpy()[row], -1)
    frame = pd.DataFrame(
        {
            "workflow": pd.Categorical.from_codes(codes, workflows.cat.categories),
            "stage": stages["stage"].astype("category"),
            "duration": stages["duration_s"].to_numpy(dtype="float64"),
        }
    )
    frame["workflow"] = frame["workflow"].cat.add_categories(["?"]).fillna("?")
    qs = [q / 100 for q in PERCENTILES]
    table = (
        frame.dropna(subset=["duration"])
        .groupby(["workflow", "stage"], observed=True)["duration"]
        .quantile(qs)
        .unstack()
    )
    return {
        f"{wf}/{stage}": {f"p{p:g}": float(row_[q]) for p, q in zip(PERCENTILES, qs, strict=True)}
        for (wf, stage), row_ in table.iterrows()
    }


def _meta_float(meta: Mapping[str, object], key: str) -> float:
    value = meta.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def compute_metrics(run: RunData) -> RunMetrics:
    """All metrics of one run (see the module docstring for the definitions)."""
    req = measured_requests(run)
    stages = _stages_in_window(run, req)
    n = len(req)
    viol = violation_mask(req)
    ok = req["ok"].to_numpy(dtype=bool)
    cold = req["cold_start"].to_numpy(dtype=bool)
    by_workflow: dict[str, dict[str, float]] = {}
    if n:
        frame = pd.DataFrame(
            {
                "workflow": req["workflow"].to_numpy(),
                "viol": viol,
                "cold": cold,
                "latency": req["latency_s"].to_numpy(dtype="float64"),
            }
        )
        for name, grp in frame.groupby("workflow", sort=True, observed=True):
            by_workflow[str(name)] = {
                "requests": float(len(grp)),
                "qos_violation_rate": float(grp["viol"].mean()),
                "cold_start_rate": float(grp["cold"].mean()),
                **percentiles(grp["latency"].to_numpy()),
            }
    cost = compute_cost(
        run.timeline,
        start_s=run.warmup_s,
        end_s=_window_end(run, req),
        invocations=_invocations(req, stages),
    )
    decide = np.array(
        [float(d["decide_s"]) for d in run.decisions if d.get("decide_s") is not None],
        dtype="float64",
    )
    return RunMetrics(
        label=run.label,
        seed=run.seed,
        path=str(run.path),
        requests=n,
        violations=int(viol.sum()),
        errors=int((~ok).sum()),
        qos_violation_rate=float(viol.mean()) if n else math.nan,
        error_rate=float((~ok).mean()) if n else math.nan,
        cold_start_rate=float(cold.mean()) if n else math.nan,
        latency_s=percentiles(req["latency_s"].to_numpy()),
        cost=cost,
        decisions=len(run.decisions),
        decide_mean_s=float(decide.mean()) if decide.size else math.nan,
        decide_p99_s=float(np.percentile(decide, 99)) if decide.size else math.nan,
        scheduler_cpu_s=_meta_float(run.meta, "scheduler_cpu_s"),
        by_workflow=by_workflow,
        cold_start_rate_by_function=_cold_by_function(req, stages),
        stage_latency_s=_stage_latency(req, stages),
        order=int(run.meta.get("policy_index", 0) or 0),
    )


def violations_over_time(run: RunData, *, bin_s: float = 10.0) -> pd.DataFrame:
    """Per time bin (by intended send time): ``t_s`` (bin start), requests, violations, rate."""
    req = run.requests
    if req.empty:
        return pd.DataFrame({"t_s": [], "requests": [], "violations": [], "rate": []})
    t = req["intended_s"].fillna(req["sent_s"]).to_numpy(dtype="float64")
    bins = np.floor(t / bin_s) * bin_s
    frame = pd.DataFrame({"t_s": bins, "viol": violation_mask(req)})
    out = frame.groupby("t_s").agg(requests=("viol", "size"), violations=("viol", "sum"))
    out["rate"] = out["violations"] / out["requests"]
    return out.reset_index()


def demand_vs_replicas(
    run: RunData, functions: Mapping[str, object] | Sequence[str] | None = None
) -> pd.DataFrame:
    """Summed over functions, per sample time: warm (ready) and starting replicas, and demand.

    Demand is the requests needing a replica at that instant (``busy + queued``).
    """
    tl = run.timeline
    if functions is not None:
        tl = tl[tl["function"].isin(list(functions))]
    if tl.empty:
        return pd.DataFrame({"t_s": [], "ready": [], "starting": [], "demand": []})
    t = tl["t_s"].round(1)
    out = (
        pd.DataFrame(
            {
                "t_s": t,
                "ready": tl["replicas_ready"],
                "starting": tl["replicas_starting"],
                "demand": tl["busy"] + tl["queued"],
            }
        )
        .groupby("t_s")
        .sum()
        .reset_index()
    )
    return out
