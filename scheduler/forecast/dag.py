"""Workflow-aware demand propagation: a burst at a workflow's entry warms the whole DAG.

Per-function forecasters only learn a downstream stage's demand *after* requests reach it, so
the paper's model cold-starts every stage of a workflow in turn during a burst. Yet a
downstream stage's arrivals are its upstream stages' arrivals times a fan-out ratio, shifted
by the upstream's latency. :class:`DagPropagator` uses that:

* **Edges** come from the workflow DAGs (:class:`testbed.core.platform.Workflow`): function ``u``
  feeds function ``d`` when a stage calling ``d`` runs after a stage calling ``u``. The
  structural weight of the edge is ``1/k`` for a stage joining ``k`` predecessors (one call per
  invocation, however many inputs), the largest over workflows sharing the edge.
* **Fan-out gain** ``g_d`` is learned online: exponentially decayed sums of ``d``'s observed
  arrivals over the structural prediction ``sum_u w_ud * arrivals_u``, each upstream's counts
  delayed by that upstream's latency in (fractional) steps, ``L = s + f``: a step's prediction
  is ``(1 - f) x[t - s] + f x[t - s - 1]`` (with a prior of one). A latency far below the
  step counts the upstream's calls in the same step, so a burst's first step is no gain of
  its own (no one-step lag); conditional stages (called by a fraction of invocations) and
  fan-outs (several calls per invocation) are learned from traffic.
* **Propagation** walks functions in DAG order; a function's effective demand is the larger of
  its own forecast and ``g_d * sum_u w_ud * demand_u`` (the upstream's *effective* demand, so a
  burst seen at the entry flows through every stage in one pass), with the upstream path
  delayed by the same fractional latency (linear interpolation between steps).

Everything works on per-step quantities of any unit (counts, rates, quantiles), as floats or
1-D numpy arrays over the horizon.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # duck-typed at run time: forecast/ imports nothing from testbed
    from testbed.core.platform import Workflow

__all__ = ["DagPropagator"]

_MAX_GAIN = 50.0
_LAG_STEPS = 8  # upstream counts kept for the latency-delayed prediction


class DagPropagator:
    """Propagates demand along workflow DAGs, at function granularity.

    Args:
        workflows: workflow name -> :class:`Workflow` (the observation's ``workflows``).
        decay: per-step decay of the sums that learn the fan-out gains, in (0, 1].
        prior_calls: weight (in calls) of the prior gain of 1.
    """

    def __init__(
        self, workflows: Mapping[str, Workflow], *, decay: float = 0.98, prior_calls: float = 5.0
    ) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = float(decay)
        self.prior_calls = float(prior_calls)
        self.edges: dict[str, dict[str, float]] = {}
        depth: dict[str, int] = {}
        for wf in workflows.values():
            by_name = {s.name: s for s in wf.stages}
            stage_depth: dict[str, int] = {}
            for stage in wf.topological_order():
                stage_depth[stage.name] = 1 + max((stage_depth[p] for p in stage.after), default=-1)
                depth[stage.function] = max(depth.get(stage.function, 0), stage_depth[stage.name])
                if not stage.after:
                    continue
                share = 1.0 / len(stage.after)
                for pred in stage.after:
                    up = by_name[pred].function
                    if up == stage.function:
                        continue
                    into = self.edges.setdefault(stage.function, {})
                    into[up] = max(into.get(up, 0.0), share)
        self.order = _walk_order(depth, self.edges)
        self._observed: dict[str, float] = {f: 0.0 for f in self.edges}
        self._predicted: dict[str, float] = {f: 0.0 for f in self.edges}
        self._recent: dict[str, deque[float]] = {}  # upstream counts, newest last

    def upstream(self, function: str) -> dict[str, float]:
        """Structural edge weights into ``function`` (empty for entries and unknowns)."""
        return dict(self.edges.get(function, {}))

    def gain(self, function: str) -> float:
        """Learned fan-out gain of ``function`` relative to its structural prediction."""
        if function not in self.edges:
            return 1.0
        num = self._observed[function] + self.prior_calls
        den = self._predicted[function] + self.prior_calls
        return min(num / den, _MAX_GAIN)

    def observe_step(
        self, arrivals: Mapping[str, float], *, latency_steps: Mapping[str, float] | None = None
    ) -> None:
        """Learn the gains from one step's observed arrivals (function -> count).

        Args:
            arrivals: this step's counts per function.
            latency_steps: upstream function -> its latency in steps (fractional; 0 when
                missing): its calls of a step reach the downstream that much later.
        """
        lat = latency_steps or {}
        for fn in {u for ups in self.edges.values() for u in ups}:
            hist = self._recent.setdefault(fn, deque([0.0] * _LAG_STEPS, maxlen=_LAG_STEPS))
            hist.append(float(arrivals.get(fn, 0.0)))
        for down, ups in self.edges.items():
            predicted = sum(w * _lagged(self._recent[u], lat.get(u, 0.0)) for u, w in ups.items())
            self._observed[down] = self.decay * self._observed[down] + float(
                arrivals.get(down, 0.0)
            )
            self._predicted[down] = self.decay * self._predicted[down] + predicted

    def propagate(
        self,
        demand: Mapping[str, Any],
        *,
        shift_steps: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Effective demand of every function: its own, or what its upstreams will send.

        Args:
            demand: function -> own demand (float, or 1-D array over horizon steps); missing
                functions count as zero.
            shift_steps: function -> its latency in (fractional) steps; an upstream's path
                is delayed by it before feeding downstream (arrays only).

        Returns:
            function -> effective demand, same kind as the inputs (every function in
            ``demand`` plus every DAG function).
        """
        shifts = shift_steps or {}
        out: dict[str, Any] = dict(demand)
        for fn in self.order:
            own = out.get(fn, 0.0)
            ups = self.edges.get(fn)
            if not ups:
                out[fn] = own
                continue
            total: Any = 0.0
            for up, w in ups.items():
                path = out.get(up, 0.0)
                total = total + w * _shift(path, shifts.get(up, 0))
            out[fn] = np.maximum(own, self.gain(fn) * total)
            if np.ndim(out[fn]) == 0:
                out[fn] = float(out[fn])
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable learned sums."""
        return {
            "observed": dict(self._observed),
            "predicted": dict(self._predicted),
            "recent": {fn: list(h) for fn, h in self._recent.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (unknown functions are ignored)."""
        for key, target in (("observed", self._observed), ("predicted", self._predicted)):
            for fn, value in state.get(key, {}).items():
                if fn in target:
                    target[fn] = float(value)
        for fn, values in state.get("recent", {}).items():
            self._recent[fn] = deque((float(v) for v in values), maxlen=_LAG_STEPS)


def _walk_order(depth: Mapping[str, int], edges: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Every function after all its upstreams (Kahn's algorithm, shallowest stage depth then
    name first among those ready), so a burst reaches every stage it feeds even when
    workflows share functions at different depths. A cycle across workflows (one calls a
    before b, another b before a) is broken at its shallowest function."""
    waiting = {f: len([u for u in edges.get(f, {}) if u in depth]) for f in depth}
    below: dict[str, list[str]] = {}
    for fn, ups in edges.items():
        for up in ups:
            below.setdefault(up, []).append(fn)
    ready = [(depth[f], f) for f, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    left = set(depth)
    while left:
        if not ready:  # a cycle: start from its shallowest function
            heapq.heappush(ready, min((depth[f], f) for f in left))
        _, fn = heapq.heappop(ready)  # each function enters the heap once
        left.discard(fn)
        order.append(fn)
        for down in below.get(fn, []):
            waiting[down] -= 1
            if waiting[down] == 0 and down in left:
                heapq.heappush(ready, (depth[down], down))
    return order


def _lagged(hist: deque[float], latency_steps: float) -> float:
    """The count ``latency_steps`` (fractional) before the newest one, interpolated."""
    lat = min(max(latency_steps, 0.0), _LAG_STEPS - 2.0)
    s = int(lat)
    f = lat - s
    n = len(hist)
    now = hist[n - 1 - s]
    before = hist[n - 2 - s]
    return (1.0 - f) * now + f * before


def _shift(path: Any, steps: float) -> Any:
    """Delay a horizon path by ``steps`` (fractional; interpolated, holding its first value).

    Scalars pass through.
    """
    if steps <= 0 or np.ndim(path) == 0:
        return path
    arr = np.asarray(path, dtype=np.float64)
    n = arr.shape[-1]
    whole = int(steps)
    frac = steps - whole
    # delayed by whole steps (holding the first value), then interpolated one step further
    lo = np.empty_like(arr)
    k = min(whole, n)
    lo[..., :k] = arr[..., :1]
    lo[..., k:] = arr[..., : n - k]
    if frac <= 0:
        return lo
    hi = np.empty_like(lo)
    hi[..., :1] = lo[..., :1]
    hi[..., 1:] = lo[..., :-1]
    return (1.0 - frac) * lo + frac * hi
