"""Oracle: knows every future arrival, keeps exactly the replicas those arrivals need.

A lower bound on cold starts for a given idle budget, for the frontier bench; not a
deployable policy. It is given the trace's arrival times through its ``arrivals`` option
(function or workflow name -> times in seconds on the platform clock; a workflow's times
count for each function it calls) and looks ahead from ``obs.now_s`` only, so it stays pure.

Model. A workflow's arrival is a use of each of its functions, at the stage's offset in the
workflow: the longest path of upstream service times (``service_s_by_function``, mean service
per function; stages of functions it does not list take no time), so a stage behind a 2 s
first stage is used 2 s after the request. Each use holds a replica for ``hold_s`` or the
function's service time, whichever is longer (``hold_s``: service plus the short delay before
a downstream stage is called, for functions of a few milliseconds). Arrivals of a function
are assigned to replica slots by interval partitioning (the lowest slot free at the arrival),
so slot ``k`` serves exactly the arrivals that find ``k - 1`` others in progress. Serving a
use of slot ``k`` warm costs idle time: the whole gap since the slot's previous use if the
replica is kept through it, or ``lead_s + tick`` if it is released and started again just in
time (``lead_s`` is an upper bound of the cold start). The cheaper of the two is the use's
*cost*. Every covered use saves one cold start, so covering the cheapest uses first, over all
functions, is the least-cold-starts choice for the idle it spends: the oracle covers uses in
order of cost (ties by time) while their summed cost stays within ``idle_budget_s``.
Sweeping the budget from 0 to the sum of all costs traces the oracle's frontier (at the top
every arrival is served warm). The budget is planned idle; the measured idle adds the hold
after each use and the tick rounding, the same for every budget.

**Bounding QoS instead of cold starts** (``qos_aware``). A cold start that the workflow's
slack absorbs costs no QoS: with ``qos_aware`` the oracle leaves such uses cold and covers
only the others. Per workflow it picks the set of stages left cold with the most summed
start lead (what serving them warm would cost per use) such that the longest path of
service times, plus the cold start (``cold_s_by_function``, a high quantile: the experiment
runner gives the profile's p95) of every stage of the set on that path, stays within the QoS
target; every use of the other stages is covered (the budget still ranks them). With an
unlimited budget it is the least idle replica-time that serves every request within its
target under the model (mean service times, no queueing, cold starts at their p95): a bound
for curves of QoS violations against idle or cost, not for cold starts.

Per tick and slot: keep the replica up to ``hold_s`` after a covered use (a workflow's later
stage is called a little after the workflow); between uses keep it through the gap when the
next use is covered and the gap is at most ``lead_s + tick``; otherwise start it when the
next covered use is at most ``lead_s + tick`` away. Replicas serving requests are never
released, nor those running or starting while requests queue (the platform started them for
the queue); a queued request does not start a replica of its own.

Registered as ``oracle`` (``needs_arrivals``: the experiment runner passes the trace).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy
from testbed.core.platform import Workflow

__all__ = ["OraclePolicy", "assign_slots", "slot_indices", "stages_left_cold"]


def assign_slots(times_s: Sequence[float] | np.ndarray, hold_s: float) -> list[np.ndarray]:
    """Interval partitioning: per slot, the sorted start times of the uses it serves.

    Args:
        times_s: arrival times (any order).
        hold_s: how long each arrival holds its replica.

    Returns:
        One array per slot (slot 1 first).
    """
    ordered = np.sort(np.asarray(times_s, dtype=np.float64))
    index = slot_indices(ordered, hold_s)
    return [ordered[index == k] for k in range(int(index.max()) + 1 if index.size else 0)]


def slot_indices(times_s: np.ndarray, hold_s: float | np.ndarray) -> np.ndarray:
    """The slot (0 = slot 1) each of the sorted ``times_s`` is served by: the lowest slot
    free at its arrival, each arrival holding its slot for ``hold_s`` (one value, or one per
    arrival)."""
    free: list[tuple[float, int]] = []  # (free from, slot)
    out = np.zeros(len(times_s), dtype=np.int64)
    holds = np.broadcast_to(np.asarray(hold_s, dtype=np.float64), np.shape(times_s))
    n_slots = 0
    for i, t in enumerate(float(x) for x in times_s):
        if free and free[0][0] <= t:
            _, k = heapq.heappop(free)
            # lowest free slot: pop every free one, keep the lowest index
            ready = [k]
            while free and free[0][0] <= t:
                ready.append(heapq.heappop(free)[1])
            k = min(ready)
            for other in ready:
                if other != k:
                    heapq.heappush(free, (t, other))
        else:
            k = n_slots
            n_slots += 1
        out[i] = k
        heapq.heappush(free, (t + float(holds[i]), k))
    return out


@dataclass
class _Slot:
    """One replica slot's uses (sorted), how long each holds it, whether each may stay cold
    (``qos_aware``), and whether each is covered (set by the plan)."""

    uses: np.ndarray
    holds: np.ndarray
    exempt: np.ndarray
    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _longest_path_s(workflow: Workflow, seconds: Mapping[str, float]) -> float:
    """The workflow's longest path, each stage taking ``seconds[stage name]``."""
    done: dict[str, float] = {}
    for stage in workflow.topological_order():
        done[stage.name] = seconds[stage.name] + max((done[u] for u in stage.after), default=0.0)
    return max(done.values())


def stages_left_cold(
    workflow: Workflow, service_s: Mapping[str, float], cold_s: Mapping[str, float],
    lead_s: Mapping[str, float],
) -> frozenset[str]:  # fmt: skip
    """The stages whose cold starts the QoS target absorbs, chosen to save the most lead.

    Among the sets of stages whose cold starts, added to the service times on every path,
    keep the longest path within ``workflow.qos.target_s``, the one with the largest summed
    ``lead_s`` of its functions (the idle a warm use of each costs), then the largest set,
    then the first in stage order. Exhaustive up to 12 stages, greedy by lead beyond.
    Functions missing from ``service_s`` / ``cold_s`` take no time / start instantly.
    """
    names = [s.name for s in workflow.stages]
    fn_of = {s.name: s.function for s in workflow.stages}
    base = {n: service_s.get(fn_of[n], 0.0) for n in names}

    def fits(chosen: frozenset[str]) -> bool:
        seconds = {n: base[n] + (cold_s.get(fn_of[n], 0.0) if n in chosen else 0.0) for n in names}
        return _longest_path_s(workflow, seconds) <= workflow.qos.target_s + 1e-9

    def saved(chosen: frozenset[str]) -> tuple[float, int]:
        return (sum(lead_s.get(fn_of[n], 0.0) for n in chosen), len(chosen))

    best: frozenset[str] = frozenset()
    if len(names) <= 12:
        for mask in range(1, 1 << len(names)):
            chosen = frozenset(n for i, n in enumerate(names) if mask >> i & 1)
            if saved(chosen) > saved(best) and fits(chosen):
                best = chosen
        return best
    for name in sorted(names, key=lambda n: -lead_s.get(fn_of[n], 0.0)):
        if fits(best | {name}):
            best = best | {name}
    return best


@register_policy("oracle")
class OraclePolicy(Policy):
    """Keeps the replicas that the known future arrivals need (see the module docstring).

    Args:
        arrivals: function or workflow name -> arrival times (s, platform clock).
        idle_budget_s: planned idle replica-seconds to spend on serving uses warm (the knob).
        lead_s: upper bound of a cold start, seconds (start this long before a use).
        hold_s: seconds one arrival holds its replica.
        lead_s_by_function: per-function ``lead_s`` (functions not listed use ``lead_s``).
        service_s_by_function: mean service time per function (s): where each stage of a
            workflow is called, and how long a use holds its replica (the experiment runner
            fills it from the simulator's profile).
        qos_aware: leave cold the uses whose cold start the workflow's QoS target absorbs
            (see the module docstring): a bound on QoS violations, not on cold starts.
        cold_s_by_function: cold start per function (s) for ``qos_aware`` (the experiment
            runner gives the profile's p95); functions not listed use ``lead_s``.
    """

    name = "oracle"
    description = "Oracle bound: knows future arrivals; least cold starts for an idle budget."
    needs_arrivals: ClassVar[bool] = True

    def __init__(
        self,
        arrivals: Mapping[str, Sequence[float]] | None = None,
        idle_budget_s: float = math.inf,
        lead_s: float = 5.0,
        hold_s: float = 1.0,
        lead_s_by_function: Mapping[str, float] | None = None,
        service_s_by_function: Mapping[str, float] | None = None,
        qos_aware: bool = False,
        cold_s_by_function: Mapping[str, float] | None = None,
    ) -> None:
        if not idle_budget_s >= 0 or not lead_s >= 0 or not hold_s > 0:
            raise ValueError("oracle: need idle_budget_s >= 0, lead_s >= 0 and hold_s > 0")
        self.leads = {str(k): float(v) for k, v in (lead_s_by_function or {}).items()}
        if any(not v >= 0 for v in self.leads.values()):
            raise ValueError("oracle: lead_s_by_function values must be >= 0")
        self.service_s = {str(k): float(v) for k, v in (service_s_by_function or {}).items()}
        if any(not v >= 0 for v in self.service_s.values()):
            raise ValueError("oracle: service_s_by_function values must be >= 0")
        self.cold_s = {str(k): float(v) for k, v in (cold_s_by_function or {}).items()}
        if any(not v >= 0 for v in self.cold_s.values()):
            raise ValueError("oracle: cold_s_by_function values must be >= 0")
        self.qos_aware = bool(qos_aware)
        self.idle_budget_s = float(idle_budget_s)
        self.lead_s = float(lead_s)
        self.hold_s = float(hold_s)
        self._given = {str(k): np.asarray(v, dtype=np.float64) for k, v in (arrivals or {}).items()}
        # per function: per slot (use start times, covered flags)
        self._slots: dict[str, list[_Slot]] | None = None
        self.left_cold: dict[str, frozenset[str]] = {}  # per workflow, when qos_aware
        self.planned_idle_s = 0.0

    def planned_cost_s(self, workflows: Mapping[str, Workflow], tick_s: float) -> float:
        """Idle seconds that serving every given arrival warm would plan (the budget's top;
        with ``qos_aware``, every arrival that needs it).

        Args:
            workflows: the workflows the arrival keys may name.
            tick_s: the daemon's tick.
        """
        return float(
            sum(
                self._use_cost(slot, self._horizon_s(fn, tick_s))[~slot.exempt].sum()
                for fn, fn_slots in self._slots_of(workflows).items()
                for slot in fn_slots
            )
        )

    @staticmethod
    def _use_cost(slot: _Slot, horizon_s: float) -> np.ndarray:
        """Idle each use of one slot costs when served warm (see the module docstring)."""
        ends = np.concatenate(([-math.inf], slot.uses[:-1] + slot.holds[:-1]))
        return np.minimum(slot.uses - ends, horizon_s)

    def _horizon_s(self, function: str, tick_s: float) -> float:
        return self.leads.get(function, self.lead_s) + tick_s

    def _hold_s(self, function: str) -> float:
        return max(self.hold_s, self.service_s.get(function, 0.0))

    def stage_offsets_s(
        self, workflow: Workflow, cold: frozenset[str] = frozenset()
    ) -> dict[str, float]:
        """Seconds after a request each stage of ``workflow`` is called: the longest path of
        its upstream stages' service times (plus the cold starts of those in ``cold``)."""
        offsets: dict[str, float] = {}
        by_name = {s.name: s for s in workflow.stages}

        def took(up: str) -> float:
            fn = by_name[up].function
            extra = self.cold_s.get(fn, self.leads.get(fn, self.lead_s)) if up in cold else 0.0
            return self.service_s.get(fn, 0.0) + extra

        for stage in workflow.topological_order():
            offsets[stage.name] = max((offsets[up] + took(up) for up in stage.after), default=0.0)
        return offsets

    def _slots_of(self, workflows: Mapping[str, Workflow]) -> dict[str, list[_Slot]]:
        """Per function, the uses of each slot (interval partitioning)."""
        per_fn: dict[str, list[tuple[np.ndarray, bool, float]]] = {}
        for key, times in self._given.items():
            wf = workflows.get(key)
            if wf is None:
                per_fn.setdefault(key, []).append((times, False, 0.0))
                continue
            offsets = self.stage_offsets_s(wf)
            cold = self._left_cold(wf) if self.qos_aware else frozenset()
            # a stage behind stages left cold is called up to their cold starts later than
            # its offset: its replica is up from the offset and held through the delay
            late = self.stage_offsets_s(wf, cold) if cold else offsets
            for stage in wf.stages:
                delay = late[stage.name] - offsets[stage.name]
                per_fn.setdefault(stage.function, []).append(
                    (times + offsets[stage.name], stage.name in cold, delay)
                )
        out: dict[str, list[_Slot]] = {}
        for fn, parts in per_fn.items():
            times = np.concatenate([t for t, _, _ in parts])
            exempt = np.concatenate([np.full(len(t), e, dtype=bool) for t, e, _ in parts])
            holds = self._hold_s(fn) + np.concatenate([np.full(len(t), d) for t, _, d in parts])
            order = np.argsort(times, kind="stable")
            times, exempt, holds = times[order], exempt[order], holds[order]
            index = slot_indices(times, holds)
            out[fn] = [
                _Slot(times[index == k], holds[index == k], exempt[index == k])
                for k in range(int(index.max()) + 1 if index.size else 0)
            ]
        return out

    def _left_cold(self, workflow: Workflow) -> frozenset[str]:
        if workflow.name not in self.left_cold:
            functions = workflow.functions
            self.left_cold[workflow.name] = stages_left_cold(
                workflow,
                self.service_s,
                {f: self.cold_s.get(f, self.leads.get(f, self.lead_s)) for f in functions},
                {f: self.leads.get(f, self.lead_s) for f in functions},
            )
        return self.left_cold[workflow.name]

    def _build(self, observation: Observation) -> dict[str, list[_Slot]]:
        slots = self._slots_of(observation.workflows)
        costs: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        for fn, fn_slots in slots.items():
            horizon_s = self._horizon_s(fn, observation.tick_s)
            for slot in fn_slots:
                costs.append(np.where(slot.exempt, math.inf, self._use_cost(slot, horizon_s)))
                starts.append(slot.uses)
        flat_cost = np.concatenate(costs) if costs else np.zeros(0)
        order = np.lexsort((np.concatenate(starts) if starts else np.zeros(0), flat_cost))
        order = order[np.isfinite(flat_cost[order])]  # uses left cold are never covered
        spent = np.cumsum(flat_cost[order])
        covered = np.zeros(len(flat_cost), dtype=bool)
        covered[order[spent <= self.idle_budget_s + 1e-9]] = True
        self.planned_idle_s = float(flat_cost[covered].sum())
        pos = 0
        for fn_slots in slots.values():
            for slot in fn_slots:
                slot.covered = covered[pos : pos + len(slot.uses)]
                pos += len(slot.uses)
        return slots

    @staticmethod
    def _keep_slot(slot: _Slot, now_s: float, horizon_s: float) -> bool:
        uses, covered = slot.uses, slot.covered
        i = int(np.searchsorted(uses, now_s, side="right"))  # uses[i] is the next use
        prev_end = uses[i - 1] + slot.holds[i - 1] if i > 0 else -math.inf
        if prev_end > now_s and covered[i - 1]:  # a covered use may still be on its way
            return True
        if i >= len(uses) or not covered[i]:
            return False  # nothing ahead, or the next use is served cold
        next_s = float(uses[i])
        return next_s - prev_end <= horizon_s or next_s - now_s <= horizon_s

    def decide(self, observation: Observation) -> Decision:
        """Replicas for the uses ahead that fit the budget. See the module docstring."""
        if self._slots is None:
            self._slots = self._build(observation)
        now_s, tick_s = observation.now_s, observation.tick_s
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            slots = self._slots.get(name, [])
            horizon_s = self._horizon_s(name, tick_s)
            keep = sum(1 for slot in slots if self._keep_slot(slot, now_s, horizon_s))
            want = math.ceil(keep / max(1, fn.max_inflight))
            # replicas serving requests are kept; queued requests get the replicas the
            # platform started for them, not one start each (on a small host a start storm
            # slows every start)
            floor = math.ceil(max(fn.inflight - fn.queued, 0) / max(1, fn.max_inflight))
            if fn.queued > 0:
                floor = max(floor, fn.replicas_ready + fn.replicas_starting)
            out[name] = FunctionDecision(
                replicas=max(want, floor), reason=f"{keep} slot(s) needed ahead"
            )
        return Decision(functions=out, reason=f"oracle idle budget {self.idle_budget_s:g}s")
