"""The discrete-event core of the simulator: functions, replicas, gateway queues and workflows.

Semantics follow the gateway's (testbed/gateway):

* each function has a *target* number of replicas; replicas start (cold start, sampled from
  the profile) until the target is met, and scale-down removes replicas that are starting or
  idle first, then drains busy ones (they finish their requests, take no new ones);
* a call to a function with no *ready* replica is a cold start: if the target is zero the
  gateway scales it from zero to one, and the call waits in the function's FIFO queue;
* a replica runs at most ``spec.max_inflight`` calls; the gateway routes to the ready replica
  with the fewest outstanding calls and queues the rest (FIFO per function);
* a call's service time is a profile sample times factors for the replica's CPU and memory
  limits and for how many calls share the replica; the gateway's own overhead (a profile
  sample) is added to every call's response;
* a replica whose memory limit is below the function's measured peak is OOM-killed while it
  serves a call: the call fails with 502, the replica is reported ``oom-killed`` and leaves
  routing at once (as the gateway's exit notifications do), and a replacement starts if the
  target needs one; with ``health_poll_s`` > 0 (a gateway that only polls) the dead replica
  counts as ready, and calls routed to it fail with 502, until the next poll;
* a call still queued ``queue_timeout_s`` after it arrived fails with 504 (the gateway's
  ``cold_start_timeout_s``, 60 s, bounds a wait for a replica: ``FunctionPool.acquire``);
* the host has ``host_cores`` cores (default: the profile's machine): every running call
  needs ``min(1, CPU limit)`` core and every starting replica its profile's
  ``cold_start_cores`` (1 unless a start storm was measured: spawn and imports are CPU-bound,
  a container engine adds its own); while the demand exceeds the cores, every call and start
  progresses at ``host_cores / demand`` of its speed (processor sharing, exact: a global
  virtual clock advances at that rate and each job ends when it has received its profile
  duration);
* a workflow runs its DAG: root stages get the request, a stage starts when all stages it
  runs ``after`` finished (fan-out and joins); the first failing stage fails the workflow.

Time only moves inside :meth:`Engine.run_until`; the event queue is a ``heapq`` of plain tuples
``(time, sequence, kind, a, b)`` and the trace's arrivals are merged in from sorted arrays.
"""

from __future__ import annotations

import heapq
import itertools
import math
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from testbed.core.canary import CanaryRoute, canary_of, check_deploy
from testbed.core.config import DEFAULT_COLD_START_TIMEOUT_S, DEFAULT_INVOKE_TIMEOUT_S, Limits
from testbed.core.errors import ConfigError, FunctionNotFound
from testbed.core.latency import LatencyHistogram
from testbed.core.platform import FunctionSpec, Workflow, WorkflowMix
from testbed.sim.distributions import Sampler
from testbed.sim.profile import FunctionProfile, Profile
from testbed.sim.records import Recorder

__all__ = ["PROFILE_ANNOTATION", "Engine", "derive_rng", "profile_host_cores"]

PROFILE_ANNOTATION = "aquatope.sim/profile"

# replica states
STARTING, READY, STOPPING, GONE, OOM = 0, 1, 2, 3, 4
STATE_NAMES = {STARTING: "starting", READY: "ready", STOPPING: "stopping", OOM: "oom-killed"}
# event kinds
_EV_READY, _EV_DONE, _EV_STAGE_DONE, _EV_ARRIVE, _EV_TIMEOUT, _EV_CPU, _EV_POLL = range(7)
# The gateway's health poll (testbed/gateway/core.py, _MONITOR_INTERVAL_S): a dead replica is
# noticed, dropped and replaced at the next poll; until then calls routed to it fail (502).
GATEWAY_HEALTH_POLL_S = 0.0  # the gateway sees a death at once (pidfd exit / docker die events)
_V_EPS = 1e-12  # virtual-time slack when collecting finished CPU jobs
# call states
_QUEUED, _RUNNING, _FINISHED = 0, 1, 2
_INF = math.inf
# Cost-relevant reservations when a spec sets neither limit nor request (docs/results.md).
_DEFAULT_CPU_CORES = 1.0
_DEFAULT_MEMORY_MB = 128.0
_RECENT_DEAD = 8  # oom-killed replicas kept visible in status()


def derive_rng(seed: int, *key: str) -> np.random.Generator:
    """An independent, reproducible generator for (seed, key...): same inputs, same stream."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(k.encode()) for k in key]
    return np.random.default_rng(words)


class _Replica:
    __slots__ = (
        "dead",
        "fn",
        "id",
        "inflight",
        "last_used_s",
        "ready_s",
        "started_s",
        "startup_s",
        "state",
    )

    def __init__(self, fn: _Fn, rid: str, now: float) -> None:
        self.fn = fn
        self.id = rid
        self.state = STARTING
        self.started_s = now
        self.ready_s: float | None = None
        self.startup_s: float | None = None
        self.inflight = 0
        self.last_used_s = now
        self.dead = False  # OOM-killed, not yet noticed by the gateway's health poll


class _Call:
    """One call of a function: a plain invocation, or one stage of a workflow invocation."""

    __slots__ = (
        "arrive_s",
        "cold",
        "end_s",
        "error",
        "fn",
        "inv",
        "oom",
        "rid",
        "stage",
        "state",
        "status",
    )

    def __init__(
        self, fn: _Fn, rid: int, arrive_s: float, inv: _Invocation | None, stage: int
    ) -> None:
        self.fn = fn
        self.rid = rid
        self.arrive_s = arrive_s
        self.inv = inv
        self.stage = stage
        self.cold = False
        self.oom = False
        self.state = _QUEUED
        self.status = 0
        self.error = ""
        self.end_s = 0.0


class _Invocation:
    __slots__ = ("arrive_s", "cold_stages", "finished", "left", "rid", "waiting", "wf")

    def __init__(self, wf: _Wf, rid: int, arrive_s: float) -> None:
        self.wf = wf
        self.rid = rid
        self.arrive_s = arrive_s
        self.waiting = list(wf.n_deps)
        self.left = len(wf.n_deps)
        self.cold_stages = 0
        self.finished = False


class _Wf:
    """A workflow compiled to index lists."""

    __slots__ = (
        "code",
        "functions",
        "n_deps",
        "name",
        "qos_target_s",
        "roots",
        "stage_codes",
        "succ",
    )

    def __init__(self, wf: Workflow, rec: Recorder) -> None:
        order = [s.name for s in wf.stages]
        index = {name: i for i, name in enumerate(order)}
        self.name = wf.name
        self.code = rec.names.code(wf.name)
        self.qos_target_s = wf.qos.target_s
        self.functions = [s.function for s in wf.stages]
        self.stage_codes = [rec.names.code(s.name) for s in wf.stages]
        self.n_deps = [len(s.after) for s in wf.stages]
        self.succ: list[list[int]] = [[] for _ in order]
        for s in wf.stages:
            for dep in s.after:
                self.succ[index[dep]].append(index[s.name])
        self.roots = [i for i, n in enumerate(self.n_deps) if n == 0]


class _Fn:
    """Everything the simulator knows about one deployed function."""

    __slots__ = (
        "canary",
        "code",
        "cold",
        "cold_factor",
        "cold_starts",
        "completed",
        "conc",
        "cpu_cores",
        "cpu_demand",
        "dead",
        "draining",
        "duration_sum",
        "errors",
        "fits",
        "limits",
        "max_inflight",
        "memory_mb",
        "metrics_cache",
        "name",
        "next_replica",
        "profile",
        "queue",
        "ready",
        "removed",
        "replicas",
        "route",
        "running",
        "sampled_ver",
        "spec",
        "start_cores",
        "started",
        "starting",
        "status_cache",
        "svc",
        "svc_factor",
        "target",
        "ver",
    )

    def __init__(self, spec: FunctionSpec, profile: FunctionProfile, seed: int, code: int) -> None:
        self.name = spec.name
        self.code = code
        self.spec = spec
        self.profile = profile
        self.svc: Sampler = profile.service_s.sampler(derive_rng(seed, "service", spec.name))
        self.cold: Sampler = profile.cold_start_s.sampler(derive_rng(seed, "cold", spec.name))
        self.target = spec.scale_bounds.min
        self.replicas: list[_Replica] = []
        self.dead: deque[_Replica] = deque(maxlen=_RECENT_DEAD)
        self.queue: deque[_Call] = deque()
        self.ready = 0
        self.starting = 0
        self.draining = 0
        self.running = 0
        self.next_replica = 0
        self.started = 0
        self.completed = 0
        self.errors = 0
        self.cold_starts = 0
        self.duration_sum = 0.0
        self.removed = False
        self.ver = 0
        self.sampled_ver = -1
        self.status_cache: tuple[int, Any] | None = None
        self.metrics_cache: tuple[int, Any] | None = None
        self.limits = Limits()
        self.canary: _Fn | None = None  # its canary, taking calls as ``route`` says
        self.route: CanaryRoute | None = None
        self.apply(spec, spec.limits)

    def apply(self, spec: FunctionSpec, limits: Limits) -> None:
        """(Re)compute everything derived from the spec and the limits."""
        self.spec = spec
        self.limits = limits
        self.max_inflight = spec.max_inflight
        cpu = limits.cpu_cores
        mem = limits.memory_mb
        p = self.profile
        self.svc_factor = p.service_factor(cpu, mem)
        self.cold_factor = p.cold_start_factor(cpu)
        self.start_cores = p.cold_start_cores
        self.fits = p.fits(mem)
        self.conc = [1.0] + [p.concurrency_factor(k) for k in range(1, spec.max_inflight + 1)]
        if len(self.conc) > 1:
            self.conc[1] = 1.0  # the reference samples are one call at a time
        self.cpu_cores = float(
            cpu if cpu is not None else spec.requests.cpu_cores or _DEFAULT_CPU_CORES
        )
        # a single-threaded handler uses at most one core; a CPU limit caps it lower
        self.cpu_demand = min(1.0, float(cpu)) if cpu is not None else 1.0
        self.memory_mb = float(
            mem if mem is not None else spec.requests.memory_mb or _DEFAULT_MEMORY_MB
        )
        self.ver += 1


class Engine:
    """Discrete-event simulation of the gateway and its replicas.

    Args:
        profile: measured behaviour to sample from.
        seed: seed of every random stream (service, cold start, overhead, mixes).
        invoke_timeout_s: the gateway's whole-call timeout (bounds ``drain`` and ``invoke``).
        queue_timeout_s: a call queued this long fails with 504; default: the gateway's
            ``cold_start_timeout_s`` (60 s), or ``invoke_timeout_s`` when that is shorter.
        health_poll_s: period of the gateway's health poll that notices dead replicas (polls
            at multiples of it); 0 notices them at once.
        start_s: the clock's initial time.
        host_cores: cores of the simulated host shared by all replicas (see the module
            docstring); None takes the profile machine's ``cpu_count`` (unlimited when the
            profile does not say), ``math.inf`` turns contention off.

    Raises:
        ConfigError: ``host_cores`` is not positive.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        seed: int = 0,
        invoke_timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S,
        start_s: float = 0.0,
        host_cores: float | None = None,
        queue_timeout_s: float | None = None,
        health_poll_s: float = GATEWAY_HEALTH_POLL_S,
    ) -> None:
        self.profile = profile
        if host_cores is None:
            host_cores = profile_host_cores(profile)
        if not float(host_cores) > 0:
            raise ConfigError(f"host_cores must be positive, got {host_cores}")
        self.host_cores = float(host_cores)
        if not float(health_poll_s) >= 0:
            raise ConfigError(f"health_poll_s must be >= 0, got {health_poll_s}")
        self.health_poll_s = float(health_poll_s)
        # processor sharing (only when the host's cores are finite)
        self._ps = math.isfinite(self.host_cores)
        self.cpu_busy = 0.0  # cores demanded now: running calls and starting replicas
        self._v = 0.0  # virtual time: seconds of full-speed work every job has received
        self._v_at = float(start_s)
        self._rate = 1.0
        self._cpu_jobs: list[tuple[float, int, int, Any, Any, float]] = []
        self._cpu_gen = 0
        self.seed = int(seed)
        self.invoke_timeout_s = float(invoke_timeout_s)
        self.queue_timeout_s = float(
            queue_timeout_s
            if queue_timeout_s is not None
            else min(DEFAULT_COLD_START_TIMEOUT_S, self.invoke_timeout_s)
        )
        self.now = float(start_s)
        self.rec = Recorder()
        self.functions: dict[str, _Fn] = {}
        self.workflows: dict[str, _Wf] = {}
        # end-to-end latency of each workflow's finished requests (the platform's metrics)
        self.workflow_latency: dict[str, LatencyHistogram] = {}
        self.mixes: dict[str, tuple[list[str], np.ndarray, np.random.Generator]] = {}
        self._heap: list[tuple[float, int, int, Any, Any]] = []
        self._seq = itertools.count()
        self._overhead = profile.gateway_overhead_s.sampler(derive_rng(seed, "gateway"))
        self._next_rid = 0
        self._arr_t: list[float] = []
        self._arr_target: list[int] = []
        self._arr_i = 0
        self._targets: list[tuple[str, str]] = []  # code -> (kind, name)
        self._target_codes: dict[str, int] = {}
        self.results: dict[int, tuple[int, float, float, int, str, list[tuple[Any, ...]]]] = {}
        self.watch: set[int] = set()
        self.open_invocations = 0
        # requests without their row yet, by request id (cancel_open records them)
        self._open: dict[int, _Invocation | _Call] = {}
        self._removed: list[_Fn] = []

    # ----------------------------------------------------------------- set-up

    def deploy(self, spec: FunctionSpec, profile: FunctionProfile) -> None:
        """Create the function or update it in place (a canary, :mod:`testbed.core.canary`,
        of a deployed function too).

        Raises:
            ConfigError: inconsistent canary labels.
            DeployError: a canary of a function not deployed or of a canary, or an update
                that turns a canary into a function or back.
        """
        fn = self.functions.get(spec.name)
        target = self.check_canary(spec)
        if fn is not None and not fn.removed:
            fn.profile = profile
            fn.apply(spec, spec.limits)
            if target is not None and target[0].route is not None:
                target[0].route.share = target[1]
            self._reconcile(fn)
            return
        fn = _Fn(spec, profile, self.seed, self.rec.names.code(spec.name))
        self.functions[spec.name] = fn
        if target is not None:
            target[0].canary = fn
            target[0].route = CanaryRoute(spec.name, target[1])
        self._reconcile(fn)

    def check_canary(self, spec: FunctionSpec) -> tuple[_Fn, float] | None:
        """The function ``spec`` is the canary of and its share (None: not a canary).

        Raises:
            ConfigError: inconsistent canary labels.
            DeployError: see :meth:`deploy`.
        """
        target = check_deploy(
            spec, lambda n: self.functions[n].spec if n in self.functions else None
        )
        return (self.functions[target[0]], target[1]) if target is not None else None

    def remove(self, name: str) -> None:
        """Delete a function (with its canary, if it has one)."""
        fn = self._fn(name)
        if fn.canary is not None and fn.canary.name in self.functions:
            self.remove(fn.canary.name)
        target = canary_of(fn.spec)
        if target is not None and target[0] in self.functions:
            primary = self.functions[target[0]]
            primary.canary = primary.route = None
        fn.removed = True
        fn.target = 0
        for r in fn.replicas:
            r.state = GONE
        fn.replicas.clear()
        fn.ready = fn.starting = fn.draining = 0
        while fn.queue:
            call = fn.queue.popleft()
            self._finish_call(call, self.now, 502, "function removed")
        del self.functions[name]
        fn.ver += 1
        self._removed.append(fn)

    def add_workflow(self, wf: Workflow) -> None:
        self.workflows[wf.name] = _Wf(wf, self.rec)

    def add_mix(self, mix: WorkflowMix) -> None:
        names = sorted(mix.weights)
        weights = np.array([mix.weights[n] for n in names], dtype=float)
        self.mixes[mix.name] = (
            names,
            np.cumsum(weights / weights.sum()),
            derive_rng(self.seed, "mix", mix.name),
        )

    def _fn(self, name: str) -> _Fn:
        fn = self.functions.get(name)
        if fn is None:
            raise FunctionNotFound(name)
        return fn

    def target_code(self, name: str) -> int:
        """Code of an invocable target (function, workflow or mix). Raises ConfigError."""
        code = self._target_codes.get(name)
        if code is not None:
            return code
        if name in self.workflows:
            kind = "workflow"
        elif name in self.mixes:
            kind = "mix"
        elif name in self.functions:
            kind = "function"
        else:
            known = sorted(set(self.functions) | set(self.workflows) | set(self.mixes))
            raise ConfigError(
                f"trace names {name!r}, which is neither a deployed function nor a "
                f"workflow; known: {', '.join(known) or 'none'}"
            )
        code = len(self._targets)
        self._targets.append((kind, name))
        self._target_codes[name] = code
        return code

    def add_arrivals(self, times: np.ndarray, codes: np.ndarray) -> None:
        """Merge sorted-or-not arrival times (seconds) with target codes into the pending trace."""
        rest_t = np.asarray(self._arr_t[self._arr_i :], dtype=float)
        rest_c = np.asarray(self._arr_target[self._arr_i :], dtype=np.int64)
        t = np.concatenate([rest_t, np.asarray(times, dtype=float)])
        c = np.concatenate([rest_c, np.asarray(codes, dtype=np.int64)])
        if len(t) and t.min() < self.now:
            raise ConfigError(
                f"an arrival at {t.min():.3f} s is before the clock ({self.now:.3f} s)"
            )
        order = np.argsort(t, kind="stable")
        self._arr_t = t[order].tolist()
        self._arr_target = c[order].tolist()
        self._arr_i = 0

    def submit(self, name: str, at_s: float, request_id: int | None = None) -> int:
        """Schedule one request to ``name`` at ``at_s``; returns its request id."""
        if at_s < self.now:
            raise ConfigError(f"cannot submit at {at_s} s: the clock is at {self.now} s")
        code = self.target_code(name)
        rid = self._new_rid() if request_id is None else int(request_id)
        self._push(at_s, _EV_ARRIVE, code, rid)
        return rid

    def _new_rid(self) -> int:
        rid = self._next_rid
        self._next_rid += 1
        return rid

    def _push(self, t: float, ev: int, a: Any, b: Any = None) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), ev, a, b))

    # ------------------------------------------------------------- event loop

    @property
    def pending_arrivals(self) -> int:
        return len(self._arr_t) - self._arr_i

    def busy(self) -> bool:
        """Whether any call is queued or running, or an invocation is open."""
        return self.open_invocations > 0 or any(
            f.running or f.queue for f in self.functions.values()
        )

    def next_event_s(self) -> float:
        t = self._heap[0][0] if self._heap else _INF
        if self._arr_i < len(self._arr_t):
            t = min(t, self._arr_t[self._arr_i])
        return t

    def run_until(self, t_end: float) -> None:
        """Process every event at or before ``t_end``, then set the clock to ``t_end``."""
        heap = self._heap
        pop = heapq.heappop
        arr_t = self._arr_t
        arr_c = self._arr_target
        n_arr = len(arr_t)
        i = self._arr_i
        targets = self._targets
        while True:
            t_arr = arr_t[i] if i < n_arr else _INF
            if heap and heap[0][0] <= t_arr:
                if heap[0][0] > t_end:
                    break
                t, _, ev, a, b = pop(heap)
                self.now = t
                if ev == _EV_DONE:
                    self._on_done(a, b, t)
                elif ev == _EV_READY:
                    self._on_ready(a, t)
                elif ev == _EV_STAGE_DONE:
                    self._on_stage_done(a)
                elif ev == _EV_ARRIVE:
                    self._arrive(targets[a], b, t)
                elif ev == _EV_CPU:
                    self._on_cpu(a)
                elif ev == _EV_POLL:
                    self._on_poll(a)
                else:
                    self._on_timeout(a, t)
            else:
                if t_arr > t_end:
                    break
                self.now = t_arr
                i += 1
                self._arr_i = i
                self._arrive(targets[arr_c[i - 1]], self._new_rid(), t_arr)
                if self._arr_t is not arr_t:  # arrivals were merged from a callback
                    arr_t, arr_c, n_arr, i = (
                        self._arr_t,
                        self._arr_target,
                        len(self._arr_t),
                        self._arr_i,
                    )
        self._arr_i = i
        if t_end > self.now:
            self.now = t_end

    # ---------------------------------------------------------------- arrivals

    def _arrive(self, target: tuple[str, str], rid: int, t: float) -> None:
        kind, name = target
        if kind == "mix":
            names, cum, rng = self.mixes[name]
            name = names[min(int(np.searchsorted(cum, rng.random(), side="right")), len(names) - 1)]
            kind = "workflow"
        if kind == "function":
            fn = self.functions.get(name)
            if fn is None:
                code = self.rec.names.code(name)
                err = self.rec.errors.code("function not found")
                self._record_request(rid, code, False, t, t, 404, 0, math.nan, err)
                return
            call = _Call(fn, rid, t, None, -1)
            self._open[rid] = call
            self._enqueue(call, t)
            return
        wf = self.workflows[name]
        inv = _Invocation(wf, rid, t)
        self._open[rid] = inv
        self.open_invocations += 1
        for s in wf.roots:
            if not self._start_stage(inv, s, t):
                return

    def _start_stage(self, inv: _Invocation, s: int, t: float) -> bool:
        fn = self.functions.get(inv.wf.functions[s])
        if fn is None:
            self._finish_invocation(inv, t, 404, f"function {inv.wf.functions[s]!r} not found")
            return False
        self._enqueue(_Call(fn, inv.rid, t, inv, s), t)
        return True

    def _enqueue(self, call: _Call, t: float) -> None:
        fn = call.fn
        canary = fn.canary
        if canary is not None and fn.route is not None:
            free = not canary.queue and canary.ready > 0 and self._pick(canary) is not None
            if fn.route.take(free):
                call.fn = fn = canary
        fn.started += 1
        fn.ver += 1
        if fn.ready == 0:
            call.cold = True
            fn.cold_starts += 1
            if fn.starting == 0:
                if fn.target < 1:
                    fn.target = max(1, fn.spec.scale_bounds.min)  # scale from zero
                self._reconcile(fn)
        elif not fn.queue:
            r = self._pick(fn)
            if r is not None:
                self._start(call, r, t)
                return
        fn.queue.append(call)
        if fn.spec.scale_on_demand:
            # Lambda/OpenWhisk-style: like the gateway's FunctionPool._scale_out_on_demand
            alive = fn.ready + fn.starting
            if len(fn.queue) > fn.starting * fn.max_inflight and alive < fn.spec.scale_bounds.max:
                fn.target = alive + 1
                self._reconcile(fn)
                if not call.cold:
                    call.cold = True
                    fn.cold_starts += 1
        self._push(call.arrive_s + self.queue_timeout_s, _EV_TIMEOUT, call)

    @staticmethod
    def _pick(fn: _Fn) -> _Replica | None:
        """The ready replica with a free slot and the fewest outstanding calls."""
        best = None
        best_n = fn.max_inflight
        for r in fn.replicas:
            if r.state == READY and r.inflight < best_n:
                best = r
                best_n = r.inflight
                if best_n == 0:
                    break
        return best

    def _start(self, call: _Call, r: _Replica, t: float) -> None:
        fn = call.fn
        if r.dead:  # routed to a replica the gateway has not yet noticed is gone
            call.state = _RUNNING
            fn.ver += 1
            self._finish_call(call, t, 502, "oom-killed")
            return
        idle_s = t - r.last_used_s if r.inflight == 0 else 0.0
        r.inflight += 1
        fn.running += 1
        call.state = _RUNNING
        k = r.inflight
        service = fn.svc.draw() * fn.svc_factor
        if fn.profile.idle_scaling:  # a replica idle a while serves its next call slower
            service *= fn.profile.idle_factor(idle_s)
        if k > 1:
            service *= fn.conc[k] if k < len(fn.conc) else fn.profile.concurrency_factor(k)
        if not fn.fits:
            call.oom = True
        if self._ps:
            self._cpu_job(service, fn.cpu_demand, _EV_DONE, r, call)
        else:
            self._push(t + service, _EV_DONE, r, call)

    # ------------------------------------------------------ processor sharing

    def _cpu_job(self, work_s: float, cores: float, ev: int, a: Any, b: Any) -> None:
        """Start a job needing ``work_s`` seconds at full speed on ``cores`` of the host."""
        self._advance_v()
        self.cpu_busy += cores
        heapq.heappush(self._cpu_jobs, (self._v + work_s, next(self._seq), ev, a, b, cores))
        self._retime()

    def _advance_v(self) -> None:
        self._v += (self.now - self._v_at) * self._rate
        self._v_at = self.now

    def _retime(self) -> None:
        """After the demand changed: new rate, and one event for the next job to finish."""
        busy = self.cpu_busy
        self._rate = 1.0 if busy <= self.host_cores else self.host_cores / busy
        self._cpu_gen += 1
        if self._cpu_jobs:
            left = max(0.0, self._cpu_jobs[0][0] - self._v)
            self._push(self.now + left / self._rate, _EV_CPU, self._cpu_gen)

    def _on_cpu(self, gen: int) -> None:
        if gen != self._cpu_gen:
            return  # superseded by a later change of the demand
        self._advance_v()
        jobs = self._cpu_jobs
        if not jobs:
            return
        # this event was timed for the first job to finish: it is done, even when rounding
        # left a sliver of its work below the clock's resolution (waiting for that sliver
        # would schedule the next event at this same instant, forever)
        done = [heapq.heappop(jobs)]
        self._v = max(self._v, done[0][0])
        while jobs and jobs[0][0] <= self._v + _V_EPS:
            done.append(heapq.heappop(jobs))
        for _, _, _, _, _, cores in done:
            self.cpu_busy -= cores
        if not jobs:
            self.cpu_busy = 0.0  # no float drift carried into the next busy period
        self._retime()
        t = self.now
        for _, _, ev, a, b, _ in done:
            if ev == _EV_DONE:
                self._on_done(a, b, t)
            else:
                self._on_ready(a, t)

    # ------------------------------------------------------------- completions

    def _on_done(self, r: _Replica, call: _Call, t: float) -> None:
        fn = call.fn
        r.inflight -= 1
        r.last_used_s = t
        fn.running -= 1
        fn.ver += 1
        if call.oom and r.state == READY and not r.dead and self.health_poll_s > 0:
            r.dead = True
            poll = self.health_poll_s
            self._push((math.floor(t / poll) + 1) * poll, _EV_POLL, r)
        elif call.oom and r.state in (READY, STOPPING) and not r.dead:
            self._kill(r, OOM)
        if r.dead or r.state == OOM:
            self._finish_call(call, t, 502, "oom-killed")
        else:
            self._finish_call(call, t, 200, "")
        if r.state == READY:
            queue = fn.queue
            while queue and r.inflight < fn.max_inflight:
                self._start(queue.popleft(), r, t)
        elif r.state == STOPPING and r.inflight == 0:
            self._kill(r, GONE)

    def _finish_call(self, call: _Call, t: float, status: int, error: str) -> None:
        fn = call.fn
        inv = call.inv
        # The gateway's overhead (client <-> gateway) is paid once per request; a stage's
        # proxy hop to its replica is inside the measured service time.
        end = t + self._overhead.draw() if inv is None else t
        call.state = _FINISHED
        call.status = status
        call.error = error
        call.end_s = end
        fn.completed += 1
        fn.duration_sum += end - call.arrive_s
        if status >= 400:
            fn.errors += 1
        if inv is None:
            self._record_request(
                call.rid,
                fn.code,
                False,
                call.arrive_s,
                end,
                status,
                1 if call.cold else 0,
                math.nan,
                self.rec.errors.code(error) if error else 0,
            )
            return
        rec = self.rec
        rec.s_id.append(call.rid)
        rec.s_stage.append(inv.wf.stage_codes[call.stage])
        rec.s_function.append(fn.code)
        rec.s_start.append(call.arrive_s)
        rec.s_end.append(end)
        rec.s_cold.append(1 if call.cold else 0)
        rec.s_status.append(status)
        self._push(end if end > self.now else self.now, _EV_STAGE_DONE, call)

    def _on_stage_done(self, call: _Call) -> None:
        inv = call.inv
        assert inv is not None
        if inv.finished:
            return
        if call.cold:
            inv.cold_stages += 1
        t = call.end_s
        if call.status >= 400:
            stage = self.rec.names.names[inv.wf.stage_codes[call.stage]]
            self._finish_invocation(inv, t, call.status, f"stage {stage}: {call.error}")
            return
        inv.left -= 1
        waiting = inv.waiting
        for s in inv.wf.succ[call.stage]:
            waiting[s] -= 1
            if waiting[s] == 0 and not self._start_stage(inv, s, t):
                return
        if inv.left == 0:
            self._finish_invocation(inv, t, 200, "")

    def _finish_invocation(self, inv: _Invocation, t: float, status: int, error: str) -> None:
        inv.finished = True
        self.open_invocations -= 1
        end = t + self._overhead.draw()
        hist = self.workflow_latency.get(inv.wf.name)
        if hist is None:
            hist = self.workflow_latency[inv.wf.name] = LatencyHistogram()
        hist.add(end - inv.arrive_s, ok=200 <= status < 300)
        self._record_request(
            inv.rid,
            inv.wf.code,
            True,
            inv.arrive_s,
            end,
            status,
            inv.cold_stages,
            inv.wf.qos_target_s,
            self.rec.errors.code(error) if error else 0,
        )

    def _record_request(
        self,
        rid: int,
        code: int,
        workflow: bool,
        arrive: float,
        end: float,
        status: int,
        cold_stages: int,
        qos: float,
        error_code: int,
    ) -> None:
        self.rec.add_request(rid, code, workflow, arrive, end, status, cold_stages, qos, error_code)
        self._open.pop(rid, None)
        if rid in self.watch:
            self.results[rid] = (
                status,
                arrive,
                end,
                cold_stages,
                self.rec.errors.names[error_code],
                [],
            )

    def cancel_open(self, t: float, error: str) -> int:
        """End every request still without a response at ``t`` as the load generator does
        when its drain runs out: status 0, ``error``, no cold stage and no stage rows (its
        stages are reported by the response it never got). Returns how many. The run ends
        here: the engine is not advanced after it."""
        if not self._open:
            return 0
        code = self.rec.errors.code(error)
        cancelled = list(self._open.items())
        for rid, item in cancelled:
            if isinstance(item, _Invocation):
                item.finished = True
                self.open_invocations -= 1
                self._record_request(
                    rid, item.wf.code, True, item.arrive_s, t, 0, 0, item.wf.qos_target_s, code
                )
            else:
                self._record_request(
                    rid, item.fn.code, False, item.arrive_s, t, 0, 0, math.nan, code
                )
        self.rec.drop_stages_of({rid for rid, _ in cancelled})
        return len(cancelled)

    def _on_timeout(self, call: _Call, t: float) -> None:
        if call.state != _QUEUED:
            return
        queue = call.fn.queue
        if queue and queue[0] is call:
            queue.popleft()
        else:
            queue.remove(call)
        call.fn.ver += 1
        self._finish_call(call, t, 504, "timeout")

    # ---------------------------------------------------------------- replicas

    def _on_ready(self, r: _Replica, t: float) -> None:
        if r.state != STARTING:  # retired while starting (its start-up still used the CPU)
            return
        fn = r.fn
        r.state = READY
        r.ready_s = t
        r.startup_s = t - r.started_s
        fn.starting -= 1
        fn.ready += 1
        fn.ver += 1
        queue = fn.queue
        while queue and r.inflight < fn.max_inflight:
            self._start(queue.popleft(), r, t)

    def _on_poll(self, r: _Replica) -> None:
        if r.state in (READY, STOPPING) and r in r.fn.replicas:
            self._kill(r, OOM)

    def _kill(self, r: _Replica, state: int) -> None:
        fn = r.fn
        if r.state == READY:
            fn.ready -= 1
        elif r.state == STARTING:
            fn.starting -= 1
        elif r.state == STOPPING:
            fn.draining -= 1
        r.state = state
        fn.replicas.remove(r)
        fn.ver += 1
        if state == OOM:
            fn.dead.append(r)
            self._reconcile(fn)

    def _reconcile(self, fn: _Fn) -> None:
        """Start or stop replicas until ready + starting equals the target.

        Like the gateway: while calls are queued the target is at least one (queued calls
        are never stranded); excess replicas go newest-starting first, then idle ones least
        recently used first, then busy ones with the fewest calls (they drain).
        """
        if fn.removed:
            return
        want = fn.target if fn.target > 0 or not fn.queue else 1
        alive = fn.ready + fn.starting
        now = self.now
        if alive < want:
            for _ in range(want - alive):
                fn.next_replica += 1
                r = _Replica(fn, f"{fn.name}-{fn.next_replica}", now)
                fn.replicas.append(r)
                fn.starting += 1
                startup = fn.cold.draw() * fn.cold_factor
                if self._ps:
                    self._cpu_job(startup, fn.start_cores, _EV_READY, r, None)
                else:
                    self._push(now + startup, _EV_READY, r)
            fn.ver += 1
        elif alive > want:
            starting = [r for r in reversed(fn.replicas) if r.state == STARTING]
            idle = sorted(
                (r for r in fn.replicas if r.state == READY and r.inflight == 0),
                key=lambda r: r.last_used_s,
            )
            busy = sorted(
                (r for r in fn.replicas if r.state == READY and r.inflight > 0),
                key=lambda r: r.inflight,
            )
            for r in (starting + idle + busy)[: alive - want]:
                if r.inflight == 0:
                    self._kill(r, GONE)
                else:
                    r.state = STOPPING
                    fn.ready -= 1
                    fn.draining += 1
            fn.ver += 1

    def scale(self, name: str, replicas: int) -> None:
        fn = self._fn(name)
        fn.target = fn.spec.scale_bounds.clamp(int(replicas))  # as the gateway's pool does
        self._reconcile(fn)

    def set_limits(self, name: str, limits: Limits) -> None:
        fn = self._fn(name)
        fn.apply(fn.spec, limits)

    # ---------------------------------------------------------------- sampling

    def sample_timeline(self, t: float) -> None:
        """Record the timeline at time ``t``.

        Only functions whose state changed since their last sample get a row here; the
        full per-sample grid is rebuilt (forward-filled) when the frame is made, so a tick
        costs little when most functions are quiet.
        """
        rec = self.rec
        rec.t_ticks.append(t)
        for fn in self.functions.values():
            if fn.ver != fn.sampled_ver:
                fn.sampled_ver = fn.ver
                rec.add_timeline(
                    t,
                    fn.code,
                    fn.ready + fn.draining,
                    fn.starting,
                    fn.running,
                    len(fn.queue),
                    fn.cpu_cores,
                    fn.memory_mb,
                )
        while self._removed:
            fn = self._removed.pop()
            rec.add_timeline(t, fn.code, 0, 0, 0, 0, fn.cpu_cores, fn.memory_mb)


def profile_host_cores(profile: Profile) -> float:
    """Cores of the machine a profile was measured on (``math.inf`` when it does not say)."""
    machine = profile.provenance.get("machine")
    cores = machine.get("cpu_count") if isinstance(machine, Mapping) else None
    return float(cores) if isinstance(cores, (int, float)) and cores > 0 else _INF


def normalise_arrivals(arrivals: object) -> Iterable[tuple[str, np.ndarray]]:
    """Turn a trace into ``(target name, times in seconds)`` pairs.

    Accepts a mapping ``{name: times}``, an object with such a mapping in ``.arrivals_s``
    (a ``loadgen.trace.Trace``), ``.arrivals`` or ``.functions``, or an iterable of
    ``(t_s, name)`` pairs.

    Raises:
        ConfigError: the shape is not one of those.
    """
    for attr in ("arrivals_s", "arrivals", "functions"):
        inner = getattr(arrivals, attr, None)
        if isinstance(inner, Mapping):
            arrivals = inner
            break
    if isinstance(arrivals, Mapping):
        return [(str(k), np.asarray(v, dtype=float).ravel()) for k, v in arrivals.items()]
    if isinstance(arrivals, Iterable):
        by_name: dict[str, list[float]] = {}
        for item in arrivals:
            try:
                t, name = item
            except (TypeError, ValueError):
                raise ConfigError(f"an arrival must be a (t_s, name) pair, got {item!r}") from None
            by_name.setdefault(str(name), []).append(float(t))
        return [(k, np.asarray(v, dtype=float)) for k, v in by_name.items()]
    raise ConfigError(
        "arrivals must be a mapping name -> times or (t_s, name) pairs, "
        f"got {type(arrivals).__name__}"
    )
