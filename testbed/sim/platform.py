"""``SimPlatform``: the :class:`~testbed.core.platform.Platform` protocol over the simulator.

It behaves like the gateway (see :mod:`testbed.sim.engine` for the semantics), in memory and
in simulated time: ``invoke`` runs the simulation until the answer is back, and
:meth:`SimPlatform.run_trace` replays a whole trace while a callback (the scheduler daemon's
tick) decides every ``tick_s`` simulated seconds. Results come out as docs/results.md rows.
"""

from __future__ import annotations

import builtins
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from testbed.core.config import DEFAULT_INVOKE_TIMEOUT_S, Limits
from testbed.core.errors import ConfigError, DeployError, FunctionNotFound, InvocationError
from testbed.core.platform import (
    FunctionMetrics,
    FunctionSpec,
    FunctionStatus,
    InvokeResult,
    MetricsSnapshot,
    ReplicaInfo,
    Workflow,
    WorkflowMix,
)
from testbed.core.schema import CANCELLED_AT_END
from testbed.sim.engine import (
    GATEWAY_HEALTH_POLL_S,
    PROFILE_ANNOTATION,
    STATE_NAMES,
    Engine,
    _Fn,
    normalise_arrivals,
)
from testbed.sim.profile import Profile, load_profile
from testbed.sim.records import write_csv_atomic

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SimClock", "SimPlatform", "SimResults"]


class SimClock:
    """The platform's clock: ``now()`` is simulated time, ``sleep_until`` runs the simulation.

    Compatible with ``scheduler.clock.Clock``, so a daemon given this clock advances the
    simulation while it waits for its next tick.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def now(self) -> float:
        return self._engine.now

    def sleep_until(self, t_s: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return False
        self._engine.run_until(t_s)
        return True


@dataclass(frozen=True)
class SimResults:
    """What a simulated run produced, as DataFrames in the docs/results.md schemas."""

    requests: pd.DataFrame
    stages: pd.DataFrame
    timeline: pd.DataFrame

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write requests.csv, stages.csv and timeline.csv atomically into ``directory``."""
        directory = Path(directory)
        return {
            name: write_csv_atomic(frame, directory / f"{name}.csv")
            for name, frame in (
                ("requests", self.requests),
                ("stages", self.stages),
                ("timeline", self.timeline),
            )
        }


class SimPlatform:
    """A simulated FaaS platform (gateway + replicas) driven by a measured profile.

    Args:
        profile: a :class:`Profile`, a path to a profile file or directory, or None for the
            shipped reference profile.
        seed: seed of every random stream; the same seed gives identical results.
        workflows: workflows (and mixes) invocable by name, e.g. ``load_workflows()``
            (a ``WorkflowCatalog``), a mapping, or an iterable of ``Workflow``; None
            registers the shipped ones (as the gateway serves them), ``()`` none.
        function_profiles: profile entry to use for a function whose name is not in the
            profile (``{"fn-17": "image-processing"}``); the ``aquatope.sim/profile``
            annotation of a spec does the same.
        invoke_timeout_s: the gateway's whole-call timeout (bounds ``drain`` and ``invoke``).
        queue_timeout_s: calls queued longer than this fail with 504 (default: the gateway's
            ``cold_start_timeout_s``, 60 s, or ``invoke_timeout_s`` when shorter).
        health_poll_s: 0 (default): a dead replica leaves routing at once, as the gateway's
            exit notifications make it; > 0 models a gateway that only polls health this
            often (an OOM-killed replica takes calls that fail with 502 until the next poll).
        start_s: initial simulated time.
        host_cores: cores shared by all replicas (CPU contention); None takes the profile
            machine's ``cpu_count``, ``math.inf`` (or ``"unlimited"``) turns contention off.
        report_peak_memory: replicas that served a call report the profile's peak memory
            in their status, as the local runtime reports what it reads (default); False
            models runtimes that cannot read it (docker, OpenFaaS CE).
    """

    def __init__(
        self,
        profile: Profile | str | Path | None = None,
        *,
        seed: int = 0,
        workflows: Any = None,
        function_profiles: Mapping[str, str] | None = None,
        invoke_timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S,
        start_s: float = 0.0,
        host_cores: float | str | None = None,
        queue_timeout_s: float | None = None,
        health_poll_s: float = GATEWAY_HEALTH_POLL_S,
        report_peak_memory: bool = True,
    ) -> None:
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.report_peak_memory = bool(report_peak_memory)
        self.seed = seed
        self.function_profiles = dict(function_profiles or {})
        if host_cores == "unlimited":
            host_cores = math.inf
        if isinstance(host_cores, str):
            raise ConfigError(f"host_cores must be a number or 'unlimited', got {host_cores!r}")
        self._engine = Engine(
            self.profile,
            seed=seed,
            invoke_timeout_s=invoke_timeout_s,
            start_s=start_s,
            host_cores=host_cores,
            queue_timeout_s=queue_timeout_s,
            health_poll_s=health_poll_s,
        )
        self.clock = SimClock(self._engine)
        self._workflow_defs: dict[str, Workflow] = {}
        self._closed = False
        if workflows is None:
            from testbed.core.workflows import load_workflows

            workflows = load_workflows()
        self.add_workflows(workflows)

    # --------------------------------------------------------------- sim API

    @property
    def now(self) -> float:
        """Simulated time in seconds."""
        return self._engine.now

    @property
    def host_cores(self) -> float:
        """Cores of the simulated host, shared by every replica (``inf``: unlimited)."""
        return self._engine.host_cores

    @property
    def workflows(self) -> dict[str, Workflow]:
        """Workflow definitions known to the platform."""
        return dict(self._workflow_defs)

    @property
    def mixes(self) -> builtins.list[str]:
        """Names of the workflow mixes known to the platform."""
        return sorted(self._engine.mixes)

    def mix_workflows(self, mix: str) -> builtins.list[str]:
        """The workflows a mix picks from. Raises KeyError for an unknown mix."""
        return builtins.list(self._engine.mixes[mix][0])

    def add_workflows(self, workflows: Any) -> None:
        """Register workflows and mixes (a ``WorkflowCatalog``, a mapping or an iterable)."""
        mixes: list[WorkflowMix] = []
        if hasattr(workflows, "workflows") and hasattr(workflows, "mixes"):
            items: list[Any] = [*workflows.workflows.values()]
            mixes = list(workflows.mixes.values())
        elif isinstance(workflows, Mapping):
            items = list(workflows.values())
        else:
            items = list(workflows)
        for item in items:
            if isinstance(item, WorkflowMix):
                mixes.append(item)
            elif isinstance(item, Workflow):
                self._workflow_defs[item.name] = item
                self._engine.add_workflow(item)
            else:
                raise ConfigError(f"expected Workflow or WorkflowMix, got {type(item).__name__}")
        for mix in mixes:
            unknown = [w for w in mix.weights if w not in self._workflow_defs]
            if unknown:
                raise ConfigError(f"mix {mix.name!r} names unknown workflow(s) {unknown}")
            self._engine.add_mix(mix)

    def submit(self, target: str, at_s: float | None = None, request_id: int | None = None) -> int:
        """Schedule one request to a function, workflow or mix at ``at_s`` (default: now).

        Returns:
            The request id its rows will carry.

        Raises:
            ConfigError: unknown target, or ``at_s`` in the past.
        """
        return self._engine.submit(target, self.now if at_s is None else at_s, request_id)

    def add_arrivals(self, arrivals: object) -> int:
        """Queue a whole trace (``{name: times}`` or ``(t_s, name)`` pairs). Returns its size.

        Request ids are assigned in arrival order when each request arrives.
        """
        times: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        for name, t in normalise_arrivals(arrivals):
            code = self._engine.target_code(name)
            times.append(t)
            codes.append(np.full(len(t), code, dtype=np.int64))
        if times:
            self._engine.add_arrivals(np.concatenate(times), np.concatenate(codes))
        return int(sum(len(t) for t in times))

    def run_until(self, t_s: float) -> None:
        """Advance the simulation to ``t_s`` (no timeline samples, no ticks)."""
        self._engine.run_until(t_s)

    def sample_timeline(self) -> None:
        """Record one timeline row per function at the current time."""
        self._engine.sample_timeline(self._engine.now)

    def run_trace(
        self,
        arrivals: object | None,
        until_s: float,
        *,
        tick_s: float = 1.0,
        on_tick: Callable[[float], object] | None = None,
        drain: bool = True,
        drain_s: float | None = None,
    ) -> SimResults:
        """Replay ``arrivals`` until ``until_s``, calling ``on_tick(now_s)`` every ``tick_s``.

        The timeline is sampled at the start and after every tick's callback (so a sample
        shows the replicas charged for the next interval). Arrivals after ``until_s`` are
        not sent. With ``drain``, requests in flight at ``until_s`` run to completion
        afterwards (no more ticks) so each has its row.

        With ``drain_s``, the run ends as a live replay does: the ticks go on while
        requests are in flight, until the later of ``until_s`` and ``drain_s`` after the
        last arrival; what is still without a response then is cancelled (status 0, no
        stage rows: the load generator's "cancelled: run ended before the response").

        Returns:
            The results so far (also available later through :meth:`results`).
        """
        if not tick_s > 0:
            raise ConfigError(f"tick_s must be positive, got {tick_s}")
        if arrivals is not None:
            self.add_arrivals(arrivals)
        if drain_s is not None and not drain_s >= 0:
            raise ConfigError(f"drain_s must be >= 0, got {drain_s}")
        engine = self._engine
        start = engine.now
        engine.sample_timeline(start)
        self._tick_until(start, until_s, tick_s, on_tick)
        # drop what the trace holds beyond the horizon
        sent = engine._arr_i
        last_sent_s = float(engine._arr_t[sent - 1]) if sent else start
        engine._arr_t = engine._arr_t[:sent]
        engine._arr_target = engine._arr_target[:sent]
        if drain_s is not None:
            deadline = max(until_s, last_sent_s + drain_s)
            self._tick_until(engine.now, deadline, tick_s, on_tick, while_busy=True)
            engine.cancel_open(engine.now, CANCELLED_AT_END)
        elif drain:
            self.drain()
        return self.results()

    def _tick_until(
        self,
        start: float,
        until_s: float,
        tick_s: float,
        on_tick: Callable[[float], object] | None,
        *,
        while_busy: bool = False,
    ) -> None:
        """Advance tick by tick from ``start`` to ``until_s`` (sampling the timeline after
        each tick's callback); with ``while_busy``, only while a call is queued or running."""
        engine = self._engine
        k = 0
        while not (while_busy and (not engine.busy() or engine.now >= until_s)):
            k += 1
            t = min(start + k * tick_s, until_s)
            if t <= engine.now and t < until_s:
                continue
            engine.run_until(t)
            if on_tick is not None:
                on_tick(t)
            engine.sample_timeline(t)
            if t >= until_s:
                break

    def drain(self, max_s: float | None = None) -> None:
        """Run until no call is queued or running (at most ``max_s``, default the timeout)."""
        engine = self._engine
        limit = engine.now + (max_s if max_s is not None else engine.invoke_timeout_s * 2)
        engine.run_until(engine.now)  # requests submitted for now arrive first
        while engine.busy():
            t = engine.next_event_s()
            if t > limit or math.isinf(t):
                break
            engine.run_until(t)

    def results(self) -> SimResults:
        """Rows recorded so far as docs/results.md DataFrames."""
        rec = self._engine.rec
        return SimResults(rec.requests_frame(), rec.stages_frame(), rec.timeline_frame())

    def write_results(self, directory: str | Path) -> dict[str, Path]:
        """Write requests.csv, stages.csv and timeline.csv into ``directory``."""
        return self.results().write(directory)

    # ------------------------------------------------------------ Platform

    def _profile_for(self, spec: FunctionSpec) -> Any:
        target = self._engine.check_canary(spec)
        if target is not None:  # a canary runs its function's code
            return target[0].profile
        name = spec.annotations.get(PROFILE_ANNOTATION) or self.function_profiles.get(spec.name)
        try:
            return self.profile.get(name or spec.name)
        except ConfigError as exc:
            raise DeployError(f"sim: {exc}") from None

    runs_canaries = True
    """Canaries (:mod:`testbed.core.canary`) are routed and counted here."""

    def deploy(self, spec: FunctionSpec) -> None:
        """Create the function (at its minimum scale) or update it in place."""
        self._check_open()
        self._engine.deploy(spec, self._profile_for(spec))

    def remove(self, name: str) -> None:
        """Delete the function; queued calls fail with 502."""
        self._check_open()
        self._engine.remove(name)

    def _status(self, fn: _Fn) -> FunctionStatus:
        cached = fn.status_cache
        if cached is not None and cached[0] == fn.ver:
            return cached[1]  # type: ignore[no-any-return]
        replicas = tuple(
            ReplicaInfo(
                id=r.id,
                state=STATE_NAMES[r.state],  # type: ignore[arg-type]
                address=f"sim://{r.id}",
                started_at=r.started_s,
                ready_at=r.ready_s,
                startup_s=r.startup_s,
                inflight=r.inflight,
                detail="memory limit below the function's peak" if r.state == 4 else "",
                # the profile's measured peak, once the replica has served a call
                peak_memory_mb=(
                    fn.profile.memory_mb
                    if self.report_peak_memory and r.state == 1 and r.last_used_s > r.started_s
                    else None
                ),
            )
            for r in [*fn.replicas, *fn.dead]
        )
        status = FunctionStatus(
            name=fn.name,
            spec=fn.spec,
            target_replicas=fn.target,
            replicas_ready=fn.ready,
            replicas_starting=fn.starting,
            limits=fn.limits,
            limits_enforced=True,
            invocation_count=fn.started,
            replicas=replicas,
            limits_detail="simulated",
        )
        fn.status_cache = (fn.ver, status)
        return status

    def list(self) -> list[FunctionStatus]:
        """Status of every deployed function."""
        status = self._status
        return [status(fn) for fn in self._engine.functions.values()]

    def status(self, name: str) -> FunctionStatus:
        """Status of one function. Raises ``FunctionNotFound``."""
        return self._status(self._engine._fn(name))

    def scale(self, name: str, *, replicas: int) -> None:
        """Set the target replicas; extra replicas go starting/idle first, busy ones drain."""
        self._check_open()
        if replicas < 0:
            raise ConfigError(f"{name}: replicas must be >= 0, got {replicas}")
        self._engine.scale(name, replicas)

    def set_limits(self, name: str, limits: Limits) -> None:
        """Replace the per-replica limits live (``None`` fields mean unlimited, as in the gateway).

        Calls started afterwards run at the new limits' speed; a memory limit below the
        function's peak makes replicas OOM on their next call.
        """
        self._check_open()
        self._engine.set_limits(name, limits)

    def invoke(
        self,
        name: str,
        payload: bytes = b"",
        *,
        workflow: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> InvokeResult:
        """Send one request now and run the simulation until its answer is back.

        The body is JSON: for a function ``{"function", "simulated": true}``; for a workflow
        the gateway's ``{"output", "stages": [...], "cold_start"}`` with simulated times.

        Raises:
            FunctionNotFound: no such function (or workflow, with ``workflow=True``).
            InvocationError: the simulation stalled before answering.
        """
        del payload, headers
        self._check_open()
        engine = self._engine
        if workflow and name not in engine.workflows and name not in engine.mixes:
            raise FunctionNotFound(name)
        if not workflow and name not in engine.functions:
            raise FunctionNotFound(name)
        rid = engine._new_rid()
        engine.watch.add(rid)
        engine.submit(name, engine.now, rid)
        deadline = engine.now + (
            timeout_s if timeout_s is not None else engine.invoke_timeout_s * 2
        )
        try:
            while rid not in engine.results:
                t = engine.next_event_s()
                if math.isinf(t) or t > deadline:
                    raise InvocationError(f"{name}: no answer within the simulated timeout")
                engine.run_until(t)
            status, arrive, end, cold_stages, error, _ = engine.results.pop(rid)
        finally:
            engine.watch.discard(rid)
        if end > engine.now:
            engine.run_until(end)
        body: dict[str, Any]
        if workflow:
            body = {
                "output": None,
                "stages": self._stage_rows(rid),
                "cold_start": cold_stages > 0,
            }
        else:
            body = {"function": name, "simulated": True}
        if error:
            body["error"] = error
        return InvokeResult(
            status_code=status,
            body=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "X-Cold-Start": "true" if cold_stages else "false",
                "X-Duration-Seconds": f"{end - arrive:.6f}",
            },
            cold_start=cold_stages > 0,
            duration_s=end - arrive,
        )

    def _stage_rows(self, rid: int) -> builtins.list[dict[str, Any]]:
        rec = self._engine.rec
        names = rec.names.names
        rows: builtins.list[dict[str, Any]] = []
        for i in range(len(rec.s_id) - 1, -1, -1):
            if rec.s_id[i] != rid:
                continue
            rows.append(
                {
                    "stage": names[rec.s_stage[i]],
                    "function": names[rec.s_function[i]],
                    "start_s": rec.s_start[i],
                    "end_s": rec.s_end[i],
                    "duration_s": rec.s_end[i] - rec.s_start[i],
                    "cold_start": bool(rec.s_cold[i]),
                    "status": rec.s_status[i],
                }
            )
        rows.sort(key=lambda row: float(row["start_s"]))
        return rows

    def _metrics(self, fn: _Fn) -> FunctionMetrics:
        cached = fn.metrics_cache
        if cached is not None and cached[0] == fn.ver:
            return cached[1]  # type: ignore[no-any-return]
        m = FunctionMetrics(
            started=fn.started,
            completed=fn.completed,
            errors=fn.errors,
            cold_starts=fn.cold_starts,
            duration_sum_s=fn.duration_sum,
            inflight=fn.running + len(fn.queue),
            queued=len(fn.queue),
            replicas_ready=fn.ready,
            replicas_starting=fn.starting,
        )
        fn.metrics_cache = (fn.ver, m)
        return m

    def metrics(self) -> MetricsSnapshot:
        """Cumulative counters and current gauges of every function, at simulated time."""
        metrics = self._metrics
        return MetricsSnapshot(
            at_s=self._engine.now,
            functions={name: metrics(fn) for name, fn in self._engine.functions.items()},
            workflows={
                name: hist.snapshot() for name, hist in self._engine.workflow_latency.items()
            },
        )

    def close(self) -> None:
        """Mark the platform closed. Idempotent; results stay readable."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise DeployError("sim platform is closed")

    def __enter__(self) -> SimPlatform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
