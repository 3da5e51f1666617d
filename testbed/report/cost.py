"""Cost of a run (DESIGN.md §8): reserved resources × time alive, idle replicas included.

The resource timeline is a step function: each sample's values hold from its ``t_s`` until the
function's next sample (the last one until the end of the window). Every replica alive
(``replicas_ready + replicas_starting``) is charged for its reserved CPU and memory, busy or
idle. Two pricing models are reported:

* decoupled: ``cpu_core_s × 0.000024 + GiB_s × 0.0000025``;
* Lambda-style: ``GB_s × 0.0000166667 + 0.20 USD per million invocations`` (GB·s computed as
  Lambda does, memory in MiB / 1024; one invocation per function call, i.e. per stage).

Wasted memory time is the GiB·s of ready replicas that served nothing:
``max(0, replicas_ready - busy) × memory``. With ``max_inflight > 1`` one replica can hold
several busy requests, so this is a lower bound of the idle memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from testbed.core.prices import (
    CPU_USD_PER_CORE_S,
    LAMBDA_USD_PER_GB_S,
    LAMBDA_USD_PER_REQUEST,
    MEMORY_USD_PER_GIB_S,
)

__all__ = [
    "CostBreakdown",
    "compute_cost",
    "timeline_intervals",
]


@dataclass(frozen=True)
class CostBreakdown:
    """Resources reserved over a window, and what they cost.

    Attributes:
        cpu_core_s / memory_gib_s: reserved by every replica alive.
        idle_cpu_core_s / idle_memory_gib_s: the part reserved by ready replicas with no work
            (``idle_memory_gib_s`` is the wasted memory time).
        replica_s / idle_replica_s: replica-seconds alive, and of those ready with no work
            (the x-axis of every pre-warming frontier).
        invocations: function calls charged per request in the Lambda model.
        window_s: length of the charged window.
        by_function: per-function ``{"cpu_core_s", "memory_gib_s", "idle_memory_gib_s"}``.
    """

    cpu_core_s: float = 0.0
    memory_gib_s: float = 0.0
    idle_cpu_core_s: float = 0.0
    idle_memory_gib_s: float = 0.0
    replica_s: float = 0.0
    idle_replica_s: float = 0.0
    invocations: int = 0
    window_s: float = 0.0
    by_function: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def decoupled_cpu_usd(self) -> float:
        return self.cpu_core_s * CPU_USD_PER_CORE_S

    @property
    def decoupled_memory_usd(self) -> float:
        return self.memory_gib_s * MEMORY_USD_PER_GIB_S

    @property
    def decoupled_usd(self) -> float:
        """Decoupled pricing: CPU core·s plus memory GiB·s."""
        return self.decoupled_cpu_usd + self.decoupled_memory_usd

    @property
    def decoupled_idle_usd(self) -> float:
        """The decoupled cost of idle ready replicas (part of :attr:`decoupled_usd`)."""
        return (
            self.idle_cpu_core_s * CPU_USD_PER_CORE_S
            + self.idle_memory_gib_s * MEMORY_USD_PER_GIB_S
        )

    @property
    def lambda_memory_usd(self) -> float:
        return self.memory_gib_s * LAMBDA_USD_PER_GB_S

    @property
    def lambda_requests_usd(self) -> float:
        return self.invocations * LAMBDA_USD_PER_REQUEST

    @property
    def lambda_usd(self) -> float:
        """Lambda-style pricing: GB·s reserved plus a per-invocation charge."""
        return self.lambda_memory_usd + self.lambda_requests_usd

    @property
    def wasted_memory_gib_s(self) -> float:
        return self.idle_memory_gib_s


def timeline_intervals(timeline: pd.DataFrame, *, start_s: float, end_s: float) -> pd.DataFrame:
    """The timeline as a step function clipped to ``[start_s, end_s]``: adds ``dt_s`` per row.

    Each sample holds until the same function's next sample; the last one until ``end_s``.
    Time before a function's first sample is not charged (nothing was observed).
    """
    if timeline.empty:
        return timeline.assign(dt_s=pd.Series(dtype="float64"))
    df = timeline.sort_values(["function", "t_s"], kind="stable").reset_index(drop=True)
    t = df["t_s"].to_numpy(dtype="float64")
    fn = df["function"].to_numpy()
    nxt = np.empty_like(t)
    nxt[:-1] = t[1:]
    nxt[-1] = end_s
    last_of_fn = np.ones(len(df), dtype=bool)
    last_of_fn[:-1] = fn[:-1] != fn[1:]
    nxt[last_of_fn] = np.maximum(end_s, t[last_of_fn])
    lo = np.maximum(t, start_s)
    hi = np.minimum(nxt, end_s)
    return df.assign(dt_s=np.clip(hi - lo, 0.0, None))


def compute_cost(
    timeline: pd.DataFrame, *, start_s: float, end_s: float, invocations: int
) -> CostBreakdown:
    """Integrate the resource timeline over ``[start_s, end_s]``.

    Args:
        timeline: rows as in ``timeline.csv``.
        start_s / end_s: the charged window (seconds since ``t0``).
        invocations: function calls in the window, for the Lambda per-request charge.

    Returns:
        The reserved resources, idle share and both prices.
    """
    iv = timeline_intervals(timeline, start_s=start_s, end_s=end_s)
    if iv.empty:
        return CostBreakdown(invocations=invocations, window_s=max(0.0, end_s - start_s))
    dt = iv["dt_s"].to_numpy()
    alive = (iv["replicas_ready"] + iv["replicas_starting"]).to_numpy(dtype="float64")
    idle = np.clip(iv["replicas_ready"].to_numpy(dtype="float64") - iv["busy"].to_numpy(), 0, None)
    cpu = iv["cpu_cores"].fillna(1.0).to_numpy(dtype="float64")
    gib = iv["memory_mb"].fillna(128.0).to_numpy(dtype="float64") / 1024.0
    parts = pd.DataFrame(
        {
            "function": iv["function"].to_numpy(),
            "cpu_core_s": alive * cpu * dt,
            "memory_gib_s": alive * gib * dt,
            "idle_cpu_core_s": idle * cpu * dt,
            "idle_memory_gib_s": idle * gib * dt,
            "replica_s": alive * dt,
            "idle_replica_s": idle * dt,
        }
    )
    per_fn = parts.groupby("function", sort=True, observed=True).sum()
    totals = per_fn.sum()
    return CostBreakdown(
        cpu_core_s=float(totals["cpu_core_s"]),
        memory_gib_s=float(totals["memory_gib_s"]),
        idle_cpu_core_s=float(totals["idle_cpu_core_s"]),
        idle_memory_gib_s=float(totals["idle_memory_gib_s"]),
        replica_s=float(totals["replica_s"]),
        idle_replica_s=float(totals["idle_replica_s"]),
        invocations=int(invocations),
        window_s=max(0.0, end_s - start_s),
        by_function={
            str(name): {k: float(v) for k, v in row.items()} for name, row in per_fn.iterrows()
        },
    )
