"""Per-function replica pools: target replicas, cold starts, FIFO queue, least-outstanding routing.

A :class:`FunctionPool` is the gateway's view of one function. It starts and stops replicas
through a :class:`~testbed.gateway.runtimes.base.ReplicaRuntime` so that the number alive follows
``target``; requests ``acquire`` a slot on the ready replica with the fewest requests in
flight (at most ``max_inflight`` each) and wait in FIFO order when none is free. A request
that arrives while no replica is ready is a *cold start*; if nothing is even starting the
pool scales from zero to one, as OpenFaaS does.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from testbed.core.config import Limits
from testbed.core.errors import DeployError, InvocationError, PlatformError, TestbedError
from testbed.core.platform import FunctionSpec, ReplicaInfo
from testbed.gateway.runtimes.base import ExitStatus, ReplicaHandle, ReplicaRuntime

__all__ = ["LATENCY_BUCKETS_S", "FunctionPool", "Replica"]

log = logging.getLogger("aquatope.gateway")

_COUNTERS = ("started", "completed", "errors", "cold_starts", "duration_sum_s", "oom_kills")
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MAX_START_BACKOFF_S = 30.0


@dataclass
class Replica:
    """One replica as the gateway tracks it."""

    id: str
    state: str  # starting | ready | stopping
    started_at: float
    handle: ReplicaHandle | None = None
    inflight: int = 0
    doomed: bool = False
    last_used: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)
    pool: FunctionPool | None = field(default=None, repr=False)  # routes its releases
    gone_at: float | None = None  # monotonic time its exit was noticed
    exit: ExitStatus | None = None  # why it is gone, once noticed

    def info(self) -> ReplicaInfo:
        h = self.handle
        return ReplicaInfo(
            id=self.id,
            state=self.state,  # type: ignore[arg-type]
            address=h.address if h else "",
            started_at=self.started_at,
            ready_at=h.ready_at if h else None,
            startup_s=h.startup_s if h else None,
            inflight=self.inflight,
            container_id=h.container_id if h else None,
            peak_memory_mb=(
                self.pool.runtime.peak_memory_mb(h)
                if h is not None and self.pool is not None and self.state == "ready"
                else None
            ),
        )


class FunctionPool:
    """Replicas, queue and counters of one deployed function."""

    def __init__(self, spec: FunctionSpec, runtime: ReplicaRuntime, *, limits_enforced: bool):
        self.spec = spec
        self.runtime = runtime
        self.limits = spec.limits
        self.target = spec.scale_bounds.min
        self.replicas: dict[str, Replica] = {}
        self.waiters: deque[asyncio.Future[Replica]] = deque()
        self.created_at = time.time()
        self.limits_enforced = limits_enforced
        self.limits_detail = "" if limits_enforced else "advisory: no writable cgroups"
        self.last_exit = ""
        self.last_start_error = ""
        self.oom_kills = 0
        self.start_failures = 0
        self.closed = False
        # cumulative counters (exported on /metrics and in MetricsSnapshot)
        self.started = 0
        self.completed = 0
        self.errors = 0
        self.cold_starts = 0
        self.duration_sum_s = 0.0
        self.active = 0
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._retry_handle: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ views
    @property
    def ready(self) -> int:
        return sum(1 for r in self.replicas.values() if r.state == "ready" and not r.doomed)

    @property
    def starting(self) -> int:
        return sum(1 for r in self.replicas.values() if r.state == "starting" and not r.doomed)

    @property
    def queued(self) -> int:
        return sum(1 for f in self.waiters if not f.done())

    def has_free_slot(self) -> bool:
        """Whether a call would start now: nothing queued and a ready replica with room."""
        if self.queued:
            return False
        limit = self.spec.max_inflight
        return any(r.state == "ready" and r.inflight < limit for r in self.replicas.values())

    def replica_infos(self) -> tuple[ReplicaInfo, ...]:
        return tuple(r.info() for r in self.replicas.values())

    # ---------------------------------------------------------------- scaling
    def set_target(self, replicas: int) -> int:
        """Set the target (clamped to the scale bounds) and start/stop replicas to match."""
        self.target = self.spec.scale_bounds.clamp(replicas)
        self.reconcile()
        return self.target

    def reconcile(self) -> None:
        """Start or stop replicas so the live ones match the target."""
        if self.closed:
            return
        want = self.target
        if self.waiters and want == 0:
            want = 1  # never strand queued requests
        alive = [r for r in self.replicas.values() if r.state != "stopping" and not r.doomed]
        if len(alive) < want:
            missing = want - len(alive)
            if self.start_failures:
                # replicas do not start: probe with one at a time until one does
                if self._retry_handle is not None or any(r.state == "starting" for r in alive):
                    return
                missing = 1
            for _ in range(missing):
                self._start_one()
        elif len(alive) > want:
            excess = len(alive) - want
            starting = sorted(
                (r for r in alive if r.state == "starting"), key=lambda r: -r.started_at
            )
            idle = sorted(
                (r for r in alive if r.state == "ready" and r.inflight == 0),
                key=lambda r: r.last_used,
            )
            busy = sorted(
                (r for r in alive if r.state == "ready" and r.inflight > 0),
                key=lambda r: r.inflight,
            )
            for replica in (starting + idle + busy)[:excess]:
                self._retire(replica)

    def adopt(self, handle: ReplicaHandle) -> None:
        """Take over a replica left running by an earlier gateway (found by the runtime)."""
        replica = Replica(
            id=handle.replica_id,
            state="ready",
            started_at=handle.started_at,
            handle=handle,
            last_used=time.time(),
            pool=self,
        )
        self.replicas[replica.id] = replica
        self._watch_exit(replica)

    def _start_one(self) -> None:
        replica = Replica(
            id=f"{self.spec.name}-{uuid.uuid4().hex[:8]}",
            state="starting",
            started_at=time.time(),
            pool=self,
        )
        self.replicas[replica.id] = replica
        replica.task = asyncio.get_running_loop().create_task(self._start(replica))

    async def _start(self, replica: Replica) -> None:
        limits = self.limits
        try:
            handle = await self.runtime.start_replica(self.spec, replica.id, limits)
        except asyncio.CancelledError:
            self.replicas.pop(replica.id, None)
            raise
        except TestbedError as exc:
            self._start_failed(replica, str(exc))
            return
        except Exception as exc:  # a runtime bug must not kill the gateway
            log.exception("replica start of %s failed", self.spec.name)
            self._start_failed(replica, f"{type(exc).__name__}: {exc}")
            return
        replica.handle = handle
        if replica.doomed or self.closed:
            self.replicas.pop(replica.id, None)
            await self._stop_quietly(handle)
            return
        if self.limits != limits:
            with contextlib.suppress(TestbedError):
                await self.runtime.apply_limits(handle, self.limits)
        if self.start_failures:
            log.info(
                "%s: replica %s started after %d failure(s)",
                self.spec.name,
                replica.id,
                self.start_failures,
            )
        self.start_failures = 0
        replica.state = "ready"
        replica.last_used = time.time()
        self._watch_exit(replica)
        self._dispatch()

    # ------------------------------------------------------------ exits
    def _watch_exit(self, replica: Replica) -> None:
        """Follow the runtime's exit notification so a dead replica leaves routing at once."""
        replica.watcher = asyncio.get_running_loop().create_task(self._await_exit(replica))

    async def _await_exit(self, replica: Replica) -> None:
        assert replica.handle is not None
        try:
            status = await self.runtime.wait_exit(replica.handle)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: watching replica %s failed", self.spec.name, replica.id)
            return
        self.replica_gone(replica, status)

    def replica_gone(self, replica: Replica, status: ExitStatus) -> None:
        """Take a replica that died (or refuses connections) out of routing and replace it.

        Replicas the pool stopped itself are no longer listed and are ignored.
        """
        if self.replicas.get(replica.id) is not replica:
            return
        replica.gone_at = time.monotonic()
        replica.exit = status
        replica.state = "stopping"
        self.replicas.pop(replica.id, None)
        self.last_exit = f"{replica.id}: {status.detail}"
        if status.oom_killed:
            self.oom_kills += 1
        log.warning("%s: replica %s gone: %s", self.spec.name, replica.id, status.detail)
        if replica.handle is not None:
            asyncio.get_running_loop().create_task(self._stop_quietly(replica.handle))
        self.reconcile()

    def _start_failed(self, replica: Replica, message: str) -> None:
        self.replicas.pop(replica.id, None)
        repeated = message == self.last_start_error
        self.last_start_error = message
        self.start_failures += 1
        if not repeated or self.start_failures in (2, 10) or self.start_failures % 100 == 0:
            log.warning(
                "%s: replica start failed (%d in a row, backing off): %s",
                self.spec.name,
                self.start_failures,
                message,
            )
        if not any(r.state == "ready" or r.state == "starting" for r in self.replicas.values()):
            while self.waiters:
                fut = self.waiters.popleft()
                if not fut.done():
                    fut.set_exception(DeployError(message))
        delay = min(_MAX_START_BACKOFF_S, 0.5 * 2 ** min(self.start_failures, 6))
        if self._retry_handle is None and not self.closed:

            def retry() -> None:
                self._retry_handle = None
                self.reconcile()

            self._retry_handle = asyncio.get_running_loop().call_later(delay, retry)

    def _retire(self, replica: Replica) -> None:
        if replica.state == "starting":
            replica.doomed = True
            return
        replica.state = "stopping"
        if replica.inflight == 0:
            self._stop_soon(replica)

    def _stop_soon(self, replica: Replica) -> None:
        if self.replicas.get(replica.id) is replica:
            del self.replicas[replica.id]
        if replica.handle is not None:
            asyncio.get_running_loop().create_task(self._stop_quietly(replica.handle))

    async def _stop_quietly(self, handle: ReplicaHandle) -> None:
        try:
            await self.runtime.stop_replica(handle)
        except Exception:
            log.exception("stopping %s failed", handle.replica_id)

    # ---------------------------------------------------------------- routing
    def _try_acquire(self) -> Replica | None:
        best: Replica | None = None
        limit = self.spec.max_inflight
        for replica in self.replicas.values():
            if (
                replica.state == "ready"
                and replica.inflight < limit
                and (best is None or replica.inflight < best.inflight)
            ):
                best = replica
        if best is not None:
            best.inflight += 1
        return best

    def _dispatch(self) -> None:
        while self.waiters:
            fut = self.waiters[0]
            if fut.done():
                self.waiters.popleft()
                continue
            replica = self._try_acquire()
            if replica is None:
                return
            self.waiters.popleft()
            fut.set_result(replica)

    async def acquire(self, timeout_s: float) -> tuple[Replica, bool]:
        """Wait for a slot on a ready replica. Returns it and whether this was a cold start.

        Raises:
            InvocationError: no replica became available within ``timeout_s``.
            DeployError: replicas cannot be started at all.
        """
        if self.closed:
            raise PlatformError(f"{self.spec.name}: function was removed or replaced")
        self.started += 1
        cold = self.ready == 0
        if cold:
            self.cold_starts += 1
        if not self.waiters:
            replica = self._try_acquire()
            if replica is not None:
                return replica, False
        if cold and self.start_failures and self.starting == 0:
            # replicas are failing to start and the pool is backing off: answer now
            raise DeployError(
                f"{self.spec.name}: replicas fail to start ({self.start_failures} in a row): "
                f"{self.last_start_error}"
            )
        fut: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        if cold and self.starting == 0:
            if self.target == 0:
                self.target = max(1, self.spec.scale_bounds.min)
            self.reconcile()
        elif self.spec.scale_on_demand and self._scale_out_on_demand() and not cold:
            cold = True
            self.cold_starts += 1
        try:
            replica = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            what = "a replica to start" if cold else "a free replica"
            raise InvocationError(
                f"{self.spec.name}: timed out after {timeout_s:g}s waiting for {what}"
            ) from None
        return replica, cold

    def _scale_out_on_demand(self) -> bool:
        """Start one more replica when the queue exceeds what starting replicas will absorb."""
        alive = self.ready + self.starting
        if self.queued <= self.starting * self.spec.max_inflight:
            return False
        if alive >= self.spec.scale_bounds.max:
            return False
        self.target = alive + 1
        self.reconcile()
        return True

    def release(self, replica: Replica) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        replica.inflight -= 1
        replica.last_used = time.time()
        if replica.state == "stopping" and replica.inflight == 0:
            self._stop_soon(replica)
        self._dispatch()

    def record(self, status: int, duration_s: float) -> None:
        """Count one finished request."""
        self.completed += 1
        self.codes[status] = self.codes.get(status, 0) + 1
        if status >= 500 or status == 0:
            self.errors += 1
        self.duration_sum_s += duration_s
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, duration_s)] += 1

    # ------------------------------------------------------- limits and health
    async def set_limits(self, limits: Limits) -> None:
        """Apply new limits to every live replica in place.

        Raises:
            DeployError: the kernel refused on some replica; limits there stay as they were.
        """
        previous = self.limits
        self.limits = limits
        enforced = True
        details: list[str] = []
        touched: list[ReplicaHandle] = []
        try:
            for replica in list(self.replicas.values()):
                if replica.handle is None:
                    continue  # starting replicas pick up self.limits when ready
                touched.append(replica.handle)  # a refusal may leave one file half-written
                outcome = await self.runtime.apply_limits(replica.handle, limits)
                enforced &= outcome.enforced
                if outcome.detail:
                    details.append(outcome.detail)
        except BaseException:
            self.limits = previous
            for handle in touched:
                with contextlib.suppress(Exception):
                    await self.runtime.apply_limits(handle, previous)
            raise
        self.limits_enforced = enforced and self.limits_enforced
        self.limits_detail = details[0] if details else self.limits_detail

    async def check_replicas(self) -> None:
        """Poll for replicas that died unnoticed (a fallback to the exit notification)."""
        for replica in list(self.replicas.values()):
            if replica.state != "ready" or replica.handle is None:
                continue
            status = await self.runtime.exit_status(replica.handle)
            if status is not None:
                self.replica_gone(replica, status)

    def hand_over(self, successor: FunctionPool) -> None:
        """Retire this pool in favour of ``successor`` (a code-changing update).

        Queued requests move to the successor's queue in their order, the cumulative
        counters carry over, and this pool's replicas drain: each stops once its in-flight
        requests are answered.
        """
        self.closed = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        for name in _COUNTERS:
            setattr(successor, name, getattr(self, name))
        successor.codes = dict(self.codes)
        successor.buckets = list(self.buckets)
        successor.waiters.extend(f for f in self.waiters if not f.done())
        self.waiters.clear()
        for replica in list(self.replicas.values()):
            if replica.state == "starting":
                replica.doomed = True  # _start stops it once it is up
            else:
                replica.state = "stopping"
                if replica.inflight == 0:
                    self._stop_soon(replica)
        successor.reconcile()
        successor._dispatch()

    async def close(self) -> None:
        """Stop every replica and fail queued requests."""
        self.closed = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(InvocationError(f"{self.spec.name}: function removed"))
        replicas = list(self.replicas.values())
        self.replicas.clear()

        async def stop(replica: Replica) -> None:
            if replica.task is not None and not replica.task.done():
                replica.doomed = True
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await replica.task
            if replica.handle is not None:
                await self._stop_quietly(replica.handle)

        await asyncio.gather(*(stop(r) for r in replicas))
