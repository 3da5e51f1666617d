"""Turn successive platform metric snapshots into per-tick :class:`Observation` objects.

The platform reports cumulative counters (requests started, completed, failed, cold starts,
summed duration) and current gauges (in flight, queued, replicas). The :class:`Observer`
keeps the previous snapshot's counters and differences them each tick, the way a Prometheus
``increase()`` would: the first tick yields zeros, and a counter that went *down* (the
gateway restarted) counts its new value as the increase. Targets, limits, scale bounds and
``max_inflight`` come from ``Platform.list()``. OOM kills are counted from the replica states
``list()`` reports: a replica id newly seen ``oom-killed`` is one kill (the ids seen are kept,
bounded, so a dead replica still listed on the next tick is not counted twice). Workflow
end-to-end latencies come from the platform's cumulative histogram, differenced the same way
(:func:`testbed.core.latency.latencies_between`), into ``Observation.workflow_latency_s``.

Parsing Prometheus text is not done here: platform clients return a
:class:`~testbed.core.platform.MetricsSnapshot` already.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.policy import FunctionObservation, Observation
from testbed.core.canary import canary_of
from testbed.core.latency import latencies_between
from testbed.core.platform import (
    FunctionMetrics,
    FunctionStatus,
    MetricsSnapshot,
    Platform,
    Workflow,
)

__all__ = ["Observer"]

_COUNTERS = ("started", "completed", "errors", "cold_starts", "duration_sum_s")
_NO_METRICS = FunctionMetrics()  # a function the metrics do not list yet
_OOM_IDS_KEPT = 64  # per function: more than any platform keeps listing dead replicas


def _increase(now: float, before: float | None) -> float:
    if before is None:
        return 0.0
    return now - before if now >= before else now  # a reset starts again from zero


class Observer:
    """Differences cumulative counters between ticks; keeps the last counters as its state.

    Args:
        tick_s: nominal tick length, used for the first tick and when the clock did not move.
        workflows: workflow DAGs to pass through to policies, keyed by name.
    """

    def __init__(self, *, tick_s: float = 1.0, workflows: Mapping[str, Workflow] | None = None):
        if not tick_s > 0:
            raise ValueError(f"tick_s must be positive, got {tick_s}")
        self.tick_s = float(tick_s)
        self.workflows: dict[str, Workflow] = dict(workflows or {})
        self._last_s: float | None = None
        self._counters: dict[str, tuple[float, ...]] = {}
        self._oom_seen: dict[str, list[str]] = {}
        self._workflow_counts: dict[str, tuple[int, ...]] = {}

    def _new_oom_kills(self, status: FunctionStatus) -> int:
        seen = self._oom_seen.setdefault(status.name, [])
        new = [r.id for r in status.replicas if r.state == "oom-killed" and r.id not in seen]
        if new:
            seen.extend(new)
            del seen[:-_OOM_IDS_KEPT]
        return len(new)

    def observe(self, platform: Platform, now_s: float) -> Observation:
        """Fetch ``metrics()`` and ``list()`` from ``platform`` and build the observation.

        Raises:
            PlatformError: the platform did not answer (the observer's state is unchanged).
        """
        snapshot = platform.metrics()
        statuses = platform.list()
        return self.update(snapshot, statuses, now_s)

    def update(
        self, snapshot: MetricsSnapshot, statuses: Iterable[FunctionStatus], now_s: float
    ) -> Observation:
        """Build the observation for the tick ending at ``now_s`` from already fetched data.

        Args:
            snapshot: cumulative metrics of every function.
            statuses: status of every deployed function (functions not listed are dropped).
            now_s: the daemon clock's time (seconds).

        Returns:
            The observation; ``tick_s`` is the time since the previous update (or the nominal
            tick on the first one).
        """
        if self._last_s is not None and now_s > self._last_s:
            tick_s = now_s - self._last_s
        else:
            tick_s = self.tick_s
        functions: dict[str, FunctionObservation] = {}
        canaries: dict[str, FunctionObservation] = {}
        counters: dict[str, tuple[float, ...]] = {}
        for status in statuses:
            name = status.name
            metrics = snapshot.functions.get(name, _NO_METRICS)
            current = (
                float(metrics.started),
                float(metrics.completed),
                float(metrics.errors),
                float(metrics.cold_starts),
                float(metrics.duration_sum_s),
            )
            before = self._counters.get(name)
            counters[name] = current
            delta = [
                _increase(cur, None if before is None else before[i])
                for i, cur in enumerate(current)
            ]
            started, completed, errors, cold, duration_s = delta
            bounds = status.spec.scale_bounds
            target = canary_of(status.spec)
            into = canaries if target is not None else functions
            into[target[0] if target is not None else name] = FunctionObservation(
                name=name,
                arrivals=round(started),
                completions=round(completed),
                errors=round(errors),
                cold_starts=round(cold),
                inflight=metrics.inflight,
                queued=metrics.queued,
                mean_service_s=duration_s / completed if completed >= 1 else None,
                replicas_ready=status.replicas_ready,
                replicas_starting=status.replicas_starting,
                target_replicas=status.target_replicas,
                limits=status.limits,
                max_inflight=status.spec.max_inflight,
                min_replicas=bounds.min,
                max_replicas=bounds.max,
                oom_kills=self._new_oom_kills(status),
                peak_rss_mb=max(
                    (r.peak_memory_mb for r in status.replicas if r.peak_memory_mb is not None),
                    default=None,
                ),
                requests=status.spec.requests,
            )
        latencies = self._workflow_latencies(snapshot)
        self._counters = counters
        self._last_s = now_s
        return Observation(
            now_s=now_s,
            tick_s=tick_s,
            functions=functions,
            workflows=dict(self.workflows),
            workflow_latency_s=latencies,
            canaries=canaries,
        )

    def _workflow_latencies(self, snapshot: MetricsSnapshot) -> dict[str, tuple[float, ...]]:
        """End-to-end latencies of the workflow requests finished since the last tick.

        Nothing on the very first tick (as for the counters); a workflow that first shows up
        later counts from zero, so its first requests are not lost.
        """
        out: dict[str, tuple[float, ...]] = {}
        counts: dict[str, tuple[int, ...]] = {}
        for name, wm in snapshot.workflows.items():
            if not wm.latency_counts:
                continue
            counts[name] = tuple(wm.latency_counts)
            if self._last_s is None:
                continue
            new = latencies_between(self._workflow_counts.get(name), counts[name])
            if new:
                out[name] = new
        self._workflow_counts = counts
        return out

    def state_dict(self) -> dict[str, Any]:
        """The last counters and time, JSON-serialisable."""
        return {
            "last_s": self._last_s,
            "counters": {
                k: dict(zip(_COUNTERS, v, strict=True)) for k, v in self._counters.items()
            },
            "oom_seen": {k: list(v) for k, v in self._oom_seen.items()},
            "workflow_counts": {k: list(v) for k, v in self._workflow_counts.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the next tick differences against those counters."""
        last = state.get("last_s")
        self._last_s = None if last is None else float(last)
        self._counters = {
            str(name): tuple(float(values.get(c, 0.0)) for c in _COUNTERS)
            for name, values in dict(state.get("counters", {})).items()
        }
        self._oom_seen = {
            str(name): [str(i) for i in ids]
            for name, ids in dict(state.get("oom_seen", {})).items()
        }
        self._workflow_counts = {
            str(name): tuple(int(c) for c in counts)
            for name, counts in dict(state.get("workflow_counts", {})).items()
        }
