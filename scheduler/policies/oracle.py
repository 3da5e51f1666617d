"""Oracle: knows every future arrival, keeps exactly the replicas those arrivals need.

A lower bound on cold starts for a given idle budget, for the frontier bench; not a
deployable policy. It is given the trace's arrival times through its ``arrivals`` option
(function or workflow name -> times in seconds on the platform clock; a workflow's times
count for each function it calls) and looks ahead from ``obs.now_s`` only, so it stays pure.

Model. A workflow's arrival is a use of each of its functions, at the stage's offset in the
workflow: the longest path of upstream service times (``service_s_by_function``, mean service
per function; stages of functions it does not list take no time), so a stage behind a 2 s
first stage is used 2 s after the request. Each use keeps its replica for ``hold_s`` or the
function's service time, whichever is longer (``hold_s``: the short delay before a downstream
stage is called, and the jitter of when a use really comes, for functions of a few
milliseconds), but is *busy* on it only for the function's service time (``hold_s`` for a
function without one): arrivals of a function are assigned to replica slots by interval
partitioning of their busy times (the lowest slot free at the arrival), so slot ``k`` serves
exactly the arrivals that find ``k - 1`` others in progress. (Partitioning by the keep time
instead planned a replica for every two calls of a 35 ms stage within a second: replicas
never needed, whose starts took the CPU the calls were running on.) Serving a
use of slot ``k`` warm costs idle time: the whole gap since the slot's previous use if the
replica is kept through it, or ``lead_s + tick`` if it is released and started again just in
time (``lead_s`` is an upper bound of the cold start). The cheaper of the two is the use's
*cost*. Every covered use saves one cold start, so covering the cheapest uses first, over all
functions, is the least-cold-starts choice for the idle it spends: the oracle covers uses in
order of cost (ties by time) while their summed cost stays within ``idle_budget_s``.
Sweeping the budget from 0 to the sum of all costs traces the oracle's frontier (at the top
every arrival is served warm). The budget is planned idle; the measured idle adds the hold
after each use and the tick rounding, the same for every budget.

**Towards bounding QoS instead of cold starts** (``qos_aware``). A user pays for QoS misses, not for
cold starts, and a request need not find each stage's replica ready on its call: it may wait
for one as long as the workflow still meets its target. With ``qos_aware`` the oracle plans
each workflow's slack (:meth:`qos_plan`): the most stages that can let their calls wait a
whole start (every path's services plus those starts within the target,
:func:`on_call_stages`) are started on their calls and never pre-warmed; every other stage
is ready on its call, started its lead earlier (its slack kept as a margin: a shorter wait
would not make its start cheaper under the model, only later). Leads are the functions'
cold starts (``cold_s_by_function``, a high quantile: the experiment runner gives the
profile's p95; ``lead_s`` for functions it does not list; ``lead_s_by_function`` still
wins). Until 2026-11-27 (night) the waits were those of largest sum (a linear program), which
put them on the long starts at the end of video-analytics and pre-warmed the short ones ahead
of them: one stage pre-warmed more per request, and no margin. The uses of the pre-warmed
stages are covered as above (the budget still ranks them); each replica goes once the call
it was started for has come (calls matched to uses by count; a call still running is kept as
in use) and waits for a late one up to its lead and a tick past its ready-by time. With an
unlimited budget it meets every request's target under the model (mean service times, no
queueing, uncontended p95 starts). On a small host starts slow each other down beyond their
p95: ``max_starts`` plans them so that no more than that many run at once
(:meth:`_stagger`; by default all the host's cores but one, which is left to the calls).
Measured (docs/scheduler.md) it meets every p95 target of the headline traces on 2
simulated cores with one start at a time; no proof of a bound (calls queueing behind each
other are outside the model).

**Starts that hold on a small host** (``plan_starts``, the cold-start bound of the headline
grid). With a fixed ``lead_s`` the bound is either loose (30 s: every start idles most of
it) or broken (5 s: the starts of a timer's firing stack on two cores and outlast it). With
``plan_starts`` each start's lead is the function's longest start
(``cold_upper_s_by_function``: the profile's largest sample), starts are staggered so that
at most ``max_starts`` run at once (one per core by default; :meth:`_stagger`), and a later
stage's use is planned up to a tick early (its call comes early whenever the stages before it
run faster than their means) and its replica is kept as long past that offset where this
outlasts the hold (the call comes as much later when they run slower; until 2026-11-29 the
hold moved early with the use, and on video-analytics, behind a 2 s first stage, 6-8 % of
requests found their later stages gone at any budget). With ``queue_within_slack`` a call
may also queue behind a busy replica of its stage, up to the stage's share of its
workflow's slack (:meth:`queue_s_by_function`), rather than need a replica of its own:
calls fired at one instant share one. Measured on the headline traces (docs/scheduler.md):
at an unlimited budget no cold start and no QoS miss at 30-60 % of the fixed 30 s lead's
idle.

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
from typing import ClassVar

import numpy as np

from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy
from testbed.core.platform import Workflow

__all__ = ["OraclePolicy", "assign_slots", "on_call_stages", "starts_for_host"]


def assign_slots(
    times_s: Sequence[float] | np.ndarray, hold_s: float, wait_s: float = 0.0
) -> list[np.ndarray]:
    """Interval partitioning: per slot, the sorted start times of the uses it serves.

    Args:
        times_s: arrival times (any order).
        hold_s: how long each arrival holds its replica.
        wait_s: how long an arrival may wait for a busy slot (it is served when the slot
            frees, and holds it ``hold_s`` from then) before it needs a slot of its own.

    Returns:
        One array per slot (slot 1 first): each arrival goes to the lowest slot free by
        its time plus ``wait_s``.
    """
    times = np.asarray(times_s, dtype=np.float64)
    return [times[idx] for idx in _partition(times, hold_s, wait_s)]


def _partition(times: np.ndarray, hold_s: float, wait_s: float) -> list[np.ndarray]:
    """:func:`assign_slots` as indices into ``times``: per slot, its arrivals in time order."""
    free: list[tuple[float, int]] = []  # (free from, slot)
    slots: list[list[int]] = []
    for i in np.argsort(times, kind="stable"):
        t = float(times[i])
        ready: list[tuple[float, int]] = []
        while free and free[0][0] <= t + wait_s:
            ready.append(heapq.heappop(free))
        if ready:
            chosen = min(ready, key=lambda slot: slot[1])  # the lowest free slot
            for other in ready:
                if other is not chosen:
                    heapq.heappush(free, other)
            served, k = max(t, chosen[0]), chosen[1]
        else:
            served, k = t, len(slots)
            slots.append([])
        slots[k].append(int(i))
        heapq.heappush(free, (served + hold_s, k))
    return [np.asarray(s, dtype=np.int64) for s in slots]


def _paths(workflow: Workflow, limit: int) -> list[list[str]] | None:
    """Every path from a root stage to a sink, or ``None`` when there are more than ``limit``."""
    out: list[list[str]] = []
    stack = [[root] for root in workflow.roots]
    while stack:
        path = stack.pop()
        nxt = workflow.successors(path[-1])
        if not nxt:
            out.append(path)
            if len(out) > limit:
                return None
        stack.extend([*path, n] for n in reversed(nxt))
    return out


_EXACT_STAGES = 12  # up to this many stages, every choice of on-call stages is tried


def on_call_stages(
    workflow: Workflow, service_s: Mapping[str, float], lead_s: Mapping[str, float]
) -> set[str]:
    """The stages whose calls can wait for a replica started on the call: most of them.

    A stage on its call adds its start lead (``lead_s[stage]``) to every path through it; a
    choice is feasible when on every path from a root to a sink the services
    (``service_s[stage]``) plus those leads stay within the QoS target. Every other stage is
    planned ready on its call, so what a choice costs is the number of stages pre-warmed
    (each idles from its start's end to its call, about the gap between the planned lead
    and the real start, plus the tick): the most stages on call win, and among those the
    choice that leaves the tightest path the most slack. Up to :data:`_EXACT_STAGES` stages
    every choice is tried; beyond, stages are added shortest lead first while they fit.
    More than 4,096 paths: none (every stage ready on its call).
    """
    names = [s.name for s in workflow.stages]
    paths = _paths(workflow, limit=4096)
    if paths is None:
        return set()
    index = {n: i for i, n in enumerate(names)}
    rows = np.zeros((len(paths), len(names)))
    for k, path in enumerate(paths):
        rows[k, [index[n] for n in path]] = 1.0
    lead = np.array([max(0.0, lead_s[n]) for n in names])
    room = workflow.qos.target_s - rows @ np.array([service_s[n] for n in names]) + 1e-9
    if len(names) <= _EXACT_STAGES:
        choices = (np.arange(2 ** len(names))[None, :] >> np.arange(len(names))[:, None]) & 1
        load = rows @ (choices * lead[:, None])  # paths x choices
        feasible = np.all(load <= room[:, None], axis=0)
        size = choices.sum(axis=0)
        tightest = np.max(load - room[:, None], axis=0)
        # most stages on call, then the most slack left on the tightest path
        best = int(np.lexsort((tightest, -size, ~feasible))[0])
        return {n for n in names if choices[index[n], best]} if feasible[best] else set()
    chosen: set[str] = set()
    load = np.zeros(len(paths))
    for n in sorted(names, key=lambda n: (lead[index[n]], index[n])):
        trial = load + rows[:, index[n]] * lead[index[n]]
        if np.all(trial <= room):
            chosen.add(n)
            load = trial
    return chosen


def starts_for_host(host_cores: float | None, *, spare_cores: int = 1) -> int | None:
    """Pre-warming starts planned at once on a host of ``host_cores`` cores: all but
    ``spare_cores``, which are left to the calls (at least one start); no limit for an
    unknown or unlimited host."""
    if host_cores is None or not math.isfinite(host_cores):
        return None
    return max(1, math.floor(host_cores) - spare_cores)


def _seconds_by_function(option: str, given: Mapping[str, float] | None) -> dict[str, float]:
    """``given`` as ``{function: seconds}``; a negative value is a ``ValueError``."""
    out = {str(k): float(v) for k, v in (given or {}).items()}
    if any(not v >= 0 for v in out.values()):
        raise ValueError(f"oracle: {option} values must be >= 0")
    return out


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
        qos_aware: plan each workflow's slack (:meth:`qos_plan`) and start replicas with the
            cold starts as leads (see the module docstring): meant to bound QoS violations
            and cost rather than cold starts (measured, not yet a bound).
        cold_s_by_function: cold start per function (s) for ``qos_aware`` (the experiment
            runner gives the profile's p95); functions not listed use ``lead_s``.
        max_starts: ``plan_starts``: plan at most this many pre-warming starts at once (each
            one's whole lead), starting earlier those that would overlap more: on a small
            host starts slow each other down (see :meth:`_stagger`). None: with
            ``qos_aware`` one core left for the calls, ``host_cores - 1`` (at least 1),
            else one start per core; no limit where the host is not known or unlimited.
        host_cores: cores of the host the replicas share (the experiment runner gives the
            simulated host's, or this machine's in a live run); sets ``max_starts`` when
            that is not given.
        plan_starts: plan every start as ``qos_aware`` does (at most ``max_starts`` at once,
            :meth:`_stagger`; leads the functions' longest starts, ``cold_upper_s_by_function``)
            while still bounding cold starts: the budget's oracle on a host where starts
            slow each other.
        cold_upper_s_by_function: the longest cold start per function (s) for
            ``plan_starts`` (the experiment runner gives the profile's largest sample);
            functions not listed use ``cold_s_by_function``, then ``lead_s``.
        queue_within_slack: a workflow's call may wait for a busy replica of its stage
            instead of needing one of its own, up to the stage's share of the workflow's
            slack (:meth:`queue_s_by_function`): calls at one instant share a replica
            where the QoS target leaves room for it.
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
        max_starts: int | None = None,
        host_cores: float | None = None,
        plan_starts: bool = False,
        queue_within_slack: bool = False,
        cold_upper_s_by_function: Mapping[str, float] | None = None,
    ) -> None:
        if not idle_budget_s >= 0 or not lead_s >= 0 or not hold_s > 0:
            raise ValueError("oracle: need idle_budget_s >= 0, lead_s >= 0 and hold_s > 0")
        self.leads = _seconds_by_function("lead_s_by_function", lead_s_by_function)
        self.service_s = _seconds_by_function("service_s_by_function", service_s_by_function)
        self.cold_s = _seconds_by_function("cold_s_by_function", cold_s_by_function)
        self.cold_upper_s = _seconds_by_function(
            "cold_upper_s_by_function", cold_upper_s_by_function
        )
        self.qos_aware = bool(qos_aware)
        self.plan_starts = self.qos_aware or bool(plan_starts)
        self.queue_within_slack = bool(queue_within_slack)
        if max_starts is not None and max_starts < 1:
            raise ValueError(f"oracle: max_starts must be >= 1, got {max_starts}")
        if host_cores is not None and not host_cores > 0:
            raise ValueError(f"oracle: host_cores must be > 0, got {host_cores}")
        if max_starts is None:  # a QoS plan leaves a core to the calls; a cold-start bound
            # takes every core (a start's longest duration and a tick cover what calls take)
            max_starts = starts_for_host(host_cores, spare_cores=1 if self.qos_aware else 0)
        self.max_starts = max_starts
        self.idle_budget_s = float(idle_budget_s)
        self.lead_s = float(lead_s)
        self.hold_s = float(hold_s)
        self._given = {str(k): np.asarray(v, dtype=np.float64) for k, v in (arrivals or {}).items()}
        # per function: per slot (use start times, covered flags)
        self._slots: dict[str, list[tuple[np.ndarray, np.ndarray]]] | None = None
        self._use_order: dict[str, np.ndarray] = {}  # qos_aware: every use, in time order
        self._calls: dict[str, float] = {}  # qos_aware: calls seen per function so far
        self._early: dict[str, list[np.ndarray]] = {}  # plan_starts: start lead per use
        self._earliest: dict[str, list[float]] = {}  # qos_aware: the largest of each slot
        self._keeps: dict[str, list[np.ndarray]] = {}  # per slot and use: its keep after it
        self.planned_idle_s = 0.0

    def planned_cost_s(self, workflows: Mapping[str, Workflow], tick_s: float) -> float:
        """Idle seconds that serving every given arrival warm would plan (the budget's top).

        Args:
            workflows: the workflows the arrival keys may name.
            tick_s: the daemon's tick.
        """
        slots = self._slot_uses(workflows, tick_s)
        return float(
            sum(
                self._use_costs(uses, keeps, self._horizon_s(fn, tick_s)).sum()
                for fn, fn_slots in slots.items()
                for uses, keeps in fn_slots
            )
        )

    @staticmethod
    def _use_costs(uses: np.ndarray, keeps: np.ndarray, horizon_s: float) -> np.ndarray:
        """Idle seconds serving each use of a slot warm costs: the gap since the previous
        use's keep ended (none within it), at most a start's horizon."""
        gaps = np.diff(uses, prepend=-math.inf) - np.concatenate(([0.0], keeps[:-1]))
        costs: np.ndarray = np.clip(gaps, 0.0, horizon_s)
        return costs

    def _horizon_s(self, function: str, tick_s: float) -> float:
        return self._lead_s(function) + tick_s

    def _lead_s(self, function: str) -> float:
        """How long before a use its start is planned: ``lead_s_by_function``, else (with
        ``plan_starts``) the function's longest start (``qos_aware``: its p95 start), else
        ``lead_s``."""
        if function in self.leads:
            return self.leads[function]
        if self.plan_starts and not self.qos_aware and function in self.cold_upper_s:
            return self.cold_upper_s[function]
        if self.plan_starts and function in self.cold_s:
            return self.cold_s[function]
        return self.lead_s

    def _hold_s(self, function: str) -> float:
        """How long a replica is kept after a use: ``hold_s`` or the service, the longer."""
        return max(self.hold_s, self.service_s.get(function, 0.0))

    def _busy_s(self, function: str) -> float:
        """How long a use occupies its replica: the service time (``hold_s`` if unknown)."""
        return self.service_s.get(function, self.hold_s)

    def stage_offsets_s(self, workflow: Workflow) -> dict[str, float]:
        """Seconds after a request each stage of ``workflow`` is called: the longest path of
        its upstream stages' service times."""
        offsets: dict[str, float] = {}
        by_name = {s.name: s for s in workflow.stages}
        for stage in workflow.topological_order():
            offsets[stage.name] = max(
                (offsets[up] + self.service_s.get(by_name[up].function, 0.0) for up in stage.after),
                default=0.0,
            )
        return offsets

    def queue_s_by_function(self, workflows: Mapping[str, Workflow]) -> dict[str, float]:
        """How long a call may wait for a busy replica of its function (``queue_within_slack``):
        per workflow, its slack (QoS target minus the longest path of mean service times)
        split evenly over the stages of its longest chain, so that waits at every stage of
        a request still meet the target under the model; the least over the workflows of
        the arrivals that call the function. Functions called outside a workflow: 0."""
        if not self.queue_within_slack:
            return {}
        waits: dict[str, float] = {}
        for key in self._given:
            wf = workflows.get(key)
            if wf is None:
                waits[key] = 0.0
                continue
            service = {fn: self.service_s.get(fn, 0.0) for fn in wf.functions}
            path = wf.critical_path_s(service) or 0.0
            depth: dict[str, int] = {}
            for stage in wf.topological_order():
                depth[stage.name] = 1 + max((depth[d] for d in stage.after), default=0)
            share = max(0.0, wf.qos.target_s - path) / max(depth.values())
            for fn in wf.functions:
                waits[fn] = min(waits.get(fn, math.inf), share)
        return waits

    def qos_plan(self, workflow: Workflow) -> dict[str, tuple[float, bool]]:
        """Per stage of ``workflow``: (seconds after a request its replica must be ready by,
        whether it may simply start on its call), for ``qos_aware``.

        The stages of :func:`on_call_stages` let their calls wait for a replica started on
        the call; every other stage is ready by its call as planned with every start taking
        its whole lead (a call that comes earlier, after shorter starts upstream, waits the
        difference, which the slack covers: those leads are in every path's sum), and the
        slack it leaves is a margin for slow services. A stage's call comes after its
        upstreams' services and waits.
        """
        by_name = {s.name: s for s in workflow.stages}
        service = {n: self.service_s.get(by_name[n].function, 0.0) for n in by_name}
        lead = {n: self._lead_s(by_name[n].function) for n in by_name}
        on_call = on_call_stages(workflow, service, lead)
        plan: dict[str, tuple[float, bool]] = {}
        for stage in workflow.topological_order():
            call = max((plan[up][0] + service[up] for up in stage.after), default=0.0)
            waits = stage.name in on_call
            plan[stage.name] = (call + (lead[stage.name] if waits else 0.0), waits)
        return plan

    def _uses(
        self, workflows: Mapping[str, Workflow], tick_s: float = 1.0
    ) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]], dict[str, list[float]]]:
        """Per function, the times of its uses, (``qos_aware``) of those on their calls, and
        per array of uses how far they were moved early.

        With ``plan_starts`` (cold starts bounded) a later stage's use is planned up to a
        tick before its offset: its call comes earlier whenever the stages before it run
        faster than their means, and a replica started for the mean would be late. It is
        kept as long past the mean offset (when that is longer than the hold): the call
        comes as much later whenever those stages run slower."""
        per_fn: dict[str, list[np.ndarray]] = {}
        on_call: dict[str, list[np.ndarray]] = {}
        moved: dict[str, list[float]] = {}
        for key, times in self._given.items():
            wf = workflows.get(key)
            if wf is None:
                per_fn.setdefault(key, []).append(times)
                moved.setdefault(key, []).append(0.0)
                continue
            if self.qos_aware:
                plan = self.qos_plan(wf)
                for stage in wf.stages:
                    ready_by, started = plan[stage.name]
                    per_fn.setdefault(stage.function, []).append(times + ready_by)
                    moved.setdefault(stage.function, []).append(0.0)
                    if started:
                        on_call.setdefault(stage.function, []).append(times + ready_by)
                continue
            offsets = self.stage_offsets_s(wf)
            for stage in wf.stages:
                at = offsets[stage.name]
                early = min(at, tick_s) if self.plan_starts else 0.0
                per_fn.setdefault(stage.function, []).append(times + at - early)
                moved.setdefault(stage.function, []).append(early)
        return per_fn, on_call, moved

    def _slots_of(
        self, workflows: Mapping[str, Workflow], tick_s: float = 1.0
    ) -> dict[str, list[np.ndarray]]:
        """Per function, per slot, the times of the uses it serves."""
        return {fn: [u for u, _ in s] for fn, s in self._slot_uses(workflows, tick_s).items()}

    def _slot_uses(
        self, workflows: Mapping[str, Workflow], tick_s: float = 1.0
    ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """Per function, per slot: the times of its uses and how long each keeps the
        replica after it (the hold, or twice the time the use was moved early by)."""
        per_fn, on_call, moved = self._uses(workflows, tick_s)
        waits = self.queue_s_by_function(workflows)
        out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for fn, uses in per_fn.items():
            times = np.concatenate(uses)
            # a call may come as much late as early: kept to its mean offset and as much past
            keeps = np.maximum(self._hold_s(fn), 2.0 * np.repeat(moved[fn], [u.size for u in uses]))
            parts = _partition(times, self._busy_s(fn), waits.get(fn, 0.0))
            if fn in on_call and parts:
                lone = self._lone_calls(fn, [times[i] for i in parts], on_call[fn], tick_s)
                parts[0] = parts[0][~lone]
            out[fn] = [(times[i], keeps[i]) for i in parts if i.size]
        return out

    def _lone_calls(
        self,
        function: str,
        slots: list[np.ndarray],
        on_call: list[np.ndarray],
        tick_s: float,
    ) -> np.ndarray:
        """Which of slot 1's uses are started on their calls with no other use near.

        A call that finds no replica gets one started by the platform, so such a use needs
        no slot planned. Not so near a use of slot 2 or up (within a busy time and a start
        lead and a tick of it, either way): the replica pre-warmed for that one would take
        the call, and the later of the two would queue behind it.
        """
        first = slots[0]
        others = np.sort(np.concatenate(slots[1:])) if len(slots) > 1 else np.zeros(0)
        near = self._busy_s(function) + self._lead_s(function) + tick_s
        lo = np.searchsorted(others, first - near, side="left")
        hi = np.searchsorted(others, first + near, side="right")
        lone: np.ndarray = np.isin(first, np.concatenate(on_call)) & (hi == lo)
        return lone

    def _build(self, observation: Observation) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        slots = self._slot_uses(observation.workflows, observation.tick_s)
        self._keeps = {fn: [k for _, k in fn_slots] for fn, fn_slots in slots.items()}
        if self.qos_aware:  # every use of a function in time order: the k-th call served
            per_fn, _, _ = self._uses(observation.workflows, observation.tick_s)
            self._use_order = {fn: np.sort(np.concatenate(u)) for fn, u in per_fn.items()}
        costs: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        for fn, fn_slots in slots.items():
            horizon_s = self._horizon_s(fn, observation.tick_s)
            for uses, keeps in fn_slots:
                costs.append(self._use_costs(uses, keeps, horizon_s))
                starts.append(uses)
        flat_cost = np.concatenate(costs) if costs else np.zeros(0)
        order = np.lexsort((np.concatenate(starts) if starts else np.zeros(0), flat_cost))
        spent = np.cumsum(flat_cost[order])
        covered = np.zeros(len(flat_cost), dtype=bool)
        covered[order[spent <= self.idle_budget_s + 1e-9]] = True
        self.planned_idle_s = float(flat_cost[covered].sum())
        out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        pos = 0
        for fn, fn_slots in slots.items():
            out[fn] = []
            for uses, _ in fn_slots:
                out[fn].append((uses, covered[pos : pos + len(uses)]))
                pos += len(uses)
        if self.plan_starts:
            self._early = self._stagger(out, observation.tick_s)
            self._earliest = {
                fn: [float(e.max(initial=0.0)) for e in slots] for fn, slots in self._early.items()
            }
        return out

    def _stagger(
        self, slots: Mapping[str, list[tuple[np.ndarray, np.ndarray]]], tick_s: float
    ) -> dict[str, list[np.ndarray]]:
        """Per slot and use, how long before its ready-by time its start is planned.

        Each function's lead, unless ``max_starts`` is set: then the covered uses that need
        a start of their own (the slot's first, and those more than a lead and a tick after
        the slot's previous use, or its hold's end without ``qos_aware``; the others keep the
        replica through the gap) are scheduled backwards from their ready-by times (latest
        first) on ``max_starts`` lanes, each start taking its whole lead and finishing as
        late as its lane allows, so that no more than ``max_starts`` of them run at once and
        each is done in time. A start decided on a tick may begin up to a tick before its
        planned time, so a lane is held a tick longer than the lead.
        """
        early = {
            fn: [np.full(len(uses), self._lead_s(fn)) for uses, _ in fn_slots]
            for fn, fn_slots in slots.items()
        }
        if self.max_starts is None:
            return early
        jobs: list[tuple[float, str, int, int]] = []
        for fn, fn_slots in slots.items():
            lead = self._lead_s(fn)
            for k, (uses, covered) in enumerate(fn_slots):
                gaps = np.diff(uses, prepend=-math.inf)
                if self.qos_aware:  # a replica goes once its call has come: kept if covered
                    kept = covered & np.roll(covered, 1) & (gaps <= lead + tick_s)
                else:  # kept through any gap of at most a lead and a tick after the keep
                    idle = self._use_costs(uses, self._keeps[fn][k], math.inf)
                    kept = covered & (idle <= lead + tick_s)
                kept[0] = False
                early[fn][k][kept] = np.maximum(lead, gaps[kept])  # kept through the gap
                jobs += [(float(uses[i]), fn, k, int(i)) for i in np.flatnonzero(covered & ~kept)]
        lanes = [-math.inf] * self.max_starts  # minus each lane's free-before time
        for ready_by, fn, k, i in sorted(jobs, reverse=True):
            free = -heapq.heappop(lanes)
            start = min(ready_by, free) - self._lead_s(fn)
            heapq.heappush(lanes, -(start - tick_s))  # it may begin a tick early
            early[fn][k][i] = ready_by - start
        return early

    @staticmethod
    def _keep_slot(
        uses: np.ndarray,
        covered: np.ndarray,
        now_s: float,
        keeps: np.ndarray,
        horizon_s: float,
        early: np.ndarray | None = None,
        tick_s: float = 0.0,
    ) -> bool:
        """Whether a slot's replica is wanted now: a covered use still on its way (within
        its keep, ``keeps[i]`` after it), or the next covered use within ``horizon_s`` of
        the previous one's end (kept through the gap) or of now (started just in time:
        ``horizon_s`` ahead, or its planned ``early[i]`` and a tick with ``plan_starts``)."""
        i = int(np.searchsorted(uses, now_s, side="right"))  # uses[i] is the next use
        prev_end = uses[i - 1] + keeps[i - 1] if i > 0 else -math.inf
        if prev_end > now_s and covered[i - 1]:  # a covered use may still be on its way
            return True
        if i >= len(uses) or not covered[i]:
            return False  # nothing ahead, or the next use is served cold
        next_s = float(uses[i])
        ahead_s = horizon_s if early is None else float(early[i]) + tick_s
        return next_s - prev_end <= horizon_s or next_s - now_s <= ahead_s

    def _awaits_call(
        self,
        name: str,
        slot: tuple[np.ndarray, np.ndarray, np.ndarray, float],
        now_s: float,
        tick_s: float,
        horizon_s: float,
    ) -> bool:
        """``qos_aware``: whether a covered use of the slot ``(uses, covered, early, the
        largest early)`` is due
        (its planned start, ``early`` before it, is within a tick) and its call has not come.

        Calls are matched to uses by count: once the function has seen ``k`` calls, its
        first ``k`` uses in time order are served, so a replica goes as soon as the call it
        was started for has come (the floor keeps it while the call runs), and waits for a
        call that comes late, up to ``horizon_s`` (its lead and a tick) past its planned time.
        """
        uses, covered, early, earliest = slot
        lo = int(np.searchsorted(uses, now_s - horizon_s, side="left"))
        hi = int(np.searchsorted(uses, now_s + earliest + tick_s, side="right"))
        if lo == hi:
            return False
        due = covered[lo:hi] & (uses[lo:hi] - early[lo:hi] - tick_s <= now_s + 1e-9)
        # uses at the same instant (a timer firing several calls) count as served together,
        # once all their calls have come
        ranks = np.searchsorted(self._use_order[name], uses[lo:hi], side="right") - 1
        return bool(np.any(due & (ranks >= self._calls.get(name, 0.0))))

    def decide(self, observation: Observation) -> Decision:
        """Replicas for the uses ahead that fit the budget. See the module docstring."""
        if self._slots is None:
            self._slots = self._build(observation)
        now_s, tick_s = observation.now_s, observation.tick_s
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            slots = self._slots.get(name, [])
            horizon_s = self._horizon_s(name, tick_s)
            if self.qos_aware:
                self._calls[name] = self._calls.get(name, 0.0) + fn.arrivals
                early, earliest = self._early.get(name, []), self._earliest.get(name, [])
                keep = sum(
                    1
                    for (u, c), e, m in zip(slots, early, earliest, strict=True)
                    if self._awaits_call(name, (u, c, e, m), now_s, tick_s, horizon_s)
                )
            else:
                planned: list[np.ndarray | None] = [*self._early.get(name, [])]
                planned += [None] * (len(slots) - len(planned))  # without plan_starts
                keep = sum(
                    1
                    for (u, c), k, e in zip(slots, self._keeps.get(name, []), planned, strict=True)
                    if self._keep_slot(u, c, now_s, k, horizon_s, e, tick_s)
                )
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
        reason = f"oracle idle budget {self.idle_budget_s:g}s"
        if self.plan_starts:
            reason += f", starts at once: {self.max_starts or 'no limit'}"
        return Decision(functions=out, reason=reason)
