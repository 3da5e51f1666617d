"""Report figures (matplotlib, Agg, no pyplot state): every value read from :mod:`metrics`.

Each function takes loaded runs grouped by policy label and returns a
:class:`matplotlib.figure.Figure`; :func:`figure_png` renders one to PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from testbed.core.prices import CPU_USD_PER_CORE_S, MEMORY_USD_PER_GIB_S
from testbed.experiment.results import RunData
from testbed.report.compare import Comparison
from testbed.report.cost import CostBreakdown
from testbed.report.metrics import demand_vs_replicas, measured_requests, violations_over_time

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "cost_breakdown",
    "figure_png",
    "latency_cdf",
    "qos_violations_over_time",
    "replicas_vs_demand",
]

_CDF_POINTS = 2000


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _colors(labels: Sequence[str]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def latency_cdf(runs: Mapping[str, Sequence[RunData]]) -> Figure:
    """End-to-end latency CDF per workflow (seeds pooled), one line per policy; QoS dashed."""
    frames = {
        label: pd.concat([measured_requests(r) for r in group], ignore_index=True)
        for label, group in runs.items()
    }
    workflows = sorted({w for f in frames.values() for w in f["workflow"].unique()}) or ["(none)"]
    fig = _figure(6.0 * min(len(workflows), 3), 4.2 * ((len(workflows) + 2) // 3))
    axes = fig.subplots((len(workflows) + 2) // 3, min(len(workflows), 3), squeeze=False).ravel()
    colors = _colors(list(runs))
    for ax, wf in zip(axes, workflows, strict=False):
        for label, frame in frames.items():
            sub = frame[frame["workflow"] == wf]
            lat = np.sort(sub["latency_s"].dropna().to_numpy(dtype="float64"))
            if lat.size == 0:
                continue
            qs = np.linspace(0, 1, min(_CDF_POINTS, lat.size))
            ax.plot(np.quantile(lat, qs), qs, label=label, color=colors[label])
            target = sub["qos_target_s"].dropna()
            if not target.empty:
                ax.axvline(float(target.iloc[0]), color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (s, log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{wf} (dashed: QoS target)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(workflows) :]:
        ax.set_visible(False)
    return fig


def qos_violations_over_time(
    runs: Mapping[str, Sequence[RunData]], *, bin_s: float = 10.0
) -> Figure:
    """Share of requests violating QoS per time bin (seeds pooled), one line per policy."""
    fig = _figure(10.0, 4.0)
    ax = fig.subplots()
    colors = _colors(list(runs))
    for label, group in runs.items():
        parts = [violations_over_time(r, bin_s=bin_s) for r in group]
        frame = pd.concat(parts).groupby("t_s")[["requests", "violations"]].sum()
        if frame.empty:
            continue
        rate = 100.0 * frame["violations"] / frame["requests"]
        ax.step(frame.index, rate, where="post", label=label, color=colors[label])
    warmup = max((r.warmup_s for g in runs.values() for r in g), default=0.0)
    if warmup > 0:
        ax.axvspan(0, warmup, color="grey", alpha=0.15, label="warm-up")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel(f"QoS violations (% of requests, {bin_s:g} s bins)")
    ax.set_title("QoS violations over time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def replicas_vs_demand(runs: Mapping[str, Sequence[RunData]]) -> Figure:
    """Per policy (its first seed): warm replicas, starting replicas and demand over time."""
    labels = list(runs)
    fig = _figure(10.0, 2.6 * max(len(labels), 1))
    axes = fig.subplots(max(len(labels), 1), 1, squeeze=False, sharex=True).ravel()
    for ax, label in zip(axes, labels, strict=False):
        run = sorted(runs[label], key=lambda r: r.seed)[0]
        frame = demand_vs_replicas(run)
        if not frame.empty:
            ax.step(
                frame["t_s"], frame["ready"], where="post", label="warm replicas", color="#1f77b4"
            )
            ax.step(
                frame["t_s"], frame["starting"], where="post", label="starting", color="#ff7f0e"
            )
            ax.step(
                frame["t_s"],
                frame["demand"],
                where="post",
                label="demand (busy+queued)",
                color="#d62728",
                alpha=0.8,
            )
        ax.set_ylabel("replicas / requests")
        ax.set_title(f"{label} (seed {run.seed}), all functions summed")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
    axes[-1].set_xlabel("time since start (s)")
    return fig


def cost_breakdown(comp: Comparison) -> Figure:
    """Mean cost per policy: decoupled (busy/idle CPU and memory) and Lambda-style parts."""
    labels = [p.label for p in comp.policies]

    def mean_of(label: str, fn: Callable[[CostBreakdown], float]) -> float:
        return float(np.mean([fn(r.cost) for r in comp.get(label).runs])) * 1e6

    cpu_price, mem_price = CPU_USD_PER_CORE_S, MEMORY_USD_PER_GIB_S
    idle_cpu = [mean_of(x, lambda c: c.idle_cpu_core_s * cpu_price) for x in labels]
    busy_cpu = [
        mean_of(x, lambda c: (c.cpu_core_s - c.idle_cpu_core_s) * cpu_price) for x in labels
    ]
    idle_mem = [mean_of(x, lambda c: c.idle_memory_gib_s * mem_price) for x in labels]
    busy_mem = [
        mean_of(x, lambda c: (c.memory_gib_s - c.idle_memory_gib_s) * mem_price) for x in labels
    ]
    lam_mem = [mean_of(x, lambda c: c.lambda_memory_usd) for x in labels]
    lam_req = [mean_of(x, lambda c: c.lambda_requests_usd) for x in labels]

    fig = _figure(max(8.0, 2.2 * len(labels) + 4), 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for values, name, color in (
        (busy_cpu, "CPU, busy replicas", "#1f77b4"),
        (idle_cpu, "CPU, idle replicas", "#aec7e8"),
        (busy_mem, "memory, busy replicas", "#d62728"),
        (idle_mem, "memory, idle replicas", "#ff9896"),
    ):
        ax1.bar(x, values, bottom=bottom, label=name, color=color)
        bottom += np.asarray(values)
    ax1.set_title("decoupled pricing (mean over seeds)")
    ax1.set_ylabel("cost (micro-USD)")
    ax1.set_xticks(x, labels, rotation=15)
    ax1.legend(fontsize="small")
    ax2.bar(x, lam_mem, label="GB·s reserved", color="#2ca02c")
    ax2.bar(x, lam_req, bottom=lam_mem, label="per-request charge", color="#98df8a")
    ax2.set_title("Lambda-style pricing (mean over seeds)")
    ax2.set_ylabel("cost (micro-USD)")
    ax2.set_xticks(x, labels, rotation=15)
    ax2.legend(fontsize="small")
    return fig
