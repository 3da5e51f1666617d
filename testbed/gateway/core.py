"""The gateway's engine: deployed functions, invocation through pools, workflow DAG execution.

HTTP-free: :mod:`testbed.gateway.app` maps OpenFaaS routes onto these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from testbed.core.atomic import atomic_write_json
from testbed.core.canary import CanaryRoute, canary_name, canary_of, check_deploy
from testbed.core.config import GatewayConfig, Limits
from testbed.core.errors import (
    ConfigError,
    DeployError,
    FunctionNotFound,
    InvocationError,
    PlatformError,
)
from testbed.core.latency import LatencyHistogram
from testbed.core.platform import FunctionSpec, FunctionStatus, Workflow
from testbed.gateway.dag import run_dag
from testbed.gateway.pool import FunctionPool, Replica
from testbed.gateway.replica_client import ReplicaClient, ReplicaConnectError, ReplicaConnectionLost
from testbed.gateway.runtimes.base import ExitStatus, ReplicaRuntime

__all__ = ["CallResult", "Gateway"]

log = logging.getLogger("aquatope.gateway")

_HOP_BY_HOP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
    "proxy-authorization",
    "authorization",
}
_MONITOR_INTERVAL_S = 0.5
_DELIVERY_ATTEMPTS = 3  # tries to deliver a request that no replica received


@dataclass(frozen=True)
class CallResult:
    """One function call as the gateway saw it (times are Unix seconds)."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    cold_start: bool
    start_s: float
    end_s: float
    error: str = ""


class Gateway:
    """Functions, their pools and workflows; serves invocations."""

    def __init__(
        self,
        config: GatewayConfig,
        runtime: ReplicaRuntime,
        workflows: Mapping[str, Workflow],
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.workflows = dict(workflows)
        self.pools: dict[str, FunctionPool] = {}
        self.canaries: dict[str, CanaryRoute] = {}  # per function with a canary (see canary.py)
        self.workflow_counts: dict[tuple[str, int], int] = {}
        self.workflow_latency: dict[str, LatencyHistogram] = {}  # end to end, per workflow
        self.created_at_s: dict[str, float] = {}  # deploy time per function (``createdAt``)
        self.started_at = time.time()
        self._session: aiohttp.ClientSession | None = None  # async calls' callbacks
        self._replicas = ReplicaClient(timeout_s=config.invoke_timeout_s)  # the hot path
        self._monitor: asyncio.Task[None] | None = None

    @property
    def state_path(self) -> Path:
        """Deployed functions, kept while the gateway runs; removed on a clean shutdown."""
        return self.config.state_dir / f"gateway-functions-{self.runtime.name}.json"

    def _save_state(self) -> None:
        state = {
            name: {
                "spec": spec_to_json(pool.spec),
                "target": pool.target,
                "created_at_s": self.created_at_s.get(name),
            }
            for name, pool in self.pools.items()
        }
        atomic_write_json(self.state_path, state, indent=None)

    async def restore(self) -> int:
        """After a crash: restore the functions recorded, re-adopt their live replicas.

        Returns the number of replicas adopted. Replicas of functions that are no longer
        recorded are stopped.
        """
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = {}
        for name, entry in state.items():
            try:
                spec = spec_from_json(entry["spec"])
            except (KeyError, TypeError, ConfigError) as exc:
                log.warning("not restoring %s: %s", name, exc)
                continue
            pool = FunctionPool(spec, self.runtime, limits_enforced=self.limits_enforced)
            pool.target = spec.scale_bounds.clamp(int(entry.get("target", 0)))
            self.pools[name] = pool
            self.created_at_s[name] = float(entry.get("created_at_s") or time.time())
        for name, pool in list(self.pools.items()):
            target = canary_of(pool.spec)
            if target is not None and target[0] in self.pools:
                self.canaries[target[0]] = CanaryRoute(name, target[1])
            elif target is not None:
                del self.pools[name]  # its function is gone: its replicas go with the leftovers
        adopted = 0
        for handle in await self.runtime.adopt_leftovers():
            owner = self.pools.get(handle.function)
            if owner is None:
                await self.runtime.stop_replica(handle)
                continue
            owner.adopt(handle)
            adopted += 1
        for pool in self.pools.values():
            pool.reconcile()
        if self.pools:
            log.info("restored %d function(s), adopted %d replica(s)", len(self.pools), adopted)
        return adopted

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.invoke_timeout_s),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        self.pools.clear()
        self.state_path.unlink(missing_ok=True)
        await self.runtime.close()
        self._replicas.close()
        if self._session is not None:
            await self._session.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_MONITOR_INTERVAL_S)
            for pool in list(self.pools.values()):
                try:
                    await pool.check_replicas()
                except Exception:
                    log.exception("health check of %s failed", pool.spec.name)

    # ------------------------------------------------------------- management
    @property
    def limits_enforced(self) -> bool:
        return bool(getattr(self.runtime, "limits_enforced", True))

    def pool(self, name: str) -> FunctionPool:
        try:
            return self.pools[name]
        except KeyError:
            raise FunctionNotFound(name) from None

    async def deploy(self, spec: FunctionSpec, *, update: bool) -> None:
        """Create (``update=False``) or update a function.

        An update that changes only limits or scale labels is applied live; any other change
        replaces the replicas.

        Raises:
            DeployError: creating an existing function, or updating a missing one.
        """
        existing = self.pools.get(spec.name)
        target = self._check_canary(spec)
        if existing is None:
            if update:
                raise FunctionNotFound(spec.name)
            pool = FunctionPool(spec, self.runtime, limits_enforced=self.limits_enforced)
            self.pools[spec.name] = pool
            self.created_at_s[spec.name] = time.time()
            if target is not None:
                self.canaries[target[0]] = CanaryRoute(spec.name, target[1])
            pool.reconcile()
            self._save_state()
            return
        if not update:
            raise DeployError(f"function {spec.name!r} already exists; use PUT to update")
        old = existing.spec
        same_code = (old.handler, old.image, dict(old.env), old.max_inflight) == (
            spec.handler,
            spec.image,
            dict(spec.env),
            spec.max_inflight,
        )
        if target is not None:  # the same canary, perhaps at another share
            self.canaries.setdefault(target[0], CanaryRoute(spec.name, target[1])).share = target[1]
        if same_code:
            existing.spec = spec
            if spec.limits != existing.limits:
                await existing.set_limits(spec.limits)
            existing.set_target(existing.target)
            self._save_state()
            return
        pool = FunctionPool(spec, self.runtime, limits_enforced=self.limits_enforced)
        pool.target = spec.scale_bounds.clamp(existing.target)
        self.pools[spec.name] = pool
        existing.hand_over(pool)  # queued requests and counters move; old replicas drain
        self._save_state()
        if spec.name in self.canaries:  # new code: the canary ran the old one
            await self.remove(canary_name(spec.name))

    def _check_canary(self, spec: FunctionSpec) -> tuple[str, float] | None:
        """``(function, share)`` when ``spec`` is a canary (:func:`canary.check_deploy`)."""
        return check_deploy(spec, lambda n: self.pools[n].spec if n in self.pools else None)

    async def remove(self, name: str) -> None:
        """Delete a function (with its canary, if it has one)."""
        pool = self.pools.pop(name, None)
        if pool is None:
            raise FunctionNotFound(name)
        self.created_at_s.pop(name, None)
        route = self.canaries.pop(name, None)
        target = canary_of(pool.spec)
        if target is not None:
            self.canaries.pop(target[0], None)
        await pool.close()
        if route is not None and route.canary in self.pools:
            await self.remove(route.canary)
        self._save_state()

    async def set_limits(self, name: str, limits: Limits) -> None:
        pool = self.pool(name)
        await pool.set_limits(limits)
        pool.spec = _with_limits(pool.spec, limits)
        self._save_state()

    def scale(self, name: str, replicas: int) -> int:
        """Set a function's target replicas (clamped to its bounds); returns the target."""
        target = self.pool(name).set_target(replicas)
        self._save_state()
        return target

    def status(self, name: str) -> FunctionStatus:
        pool = self.pool(name)
        return FunctionStatus(
            name=name,
            spec=pool.spec,
            target_replicas=pool.target,
            replicas_ready=pool.ready,
            replicas_starting=pool.starting,
            limits=pool.limits,
            limits_enforced=pool.limits_enforced,
            invocation_count=pool.completed,
            replicas=pool.replica_infos(),
            limits_detail=pool.limits_detail,
            last_exit=pool.last_exit or pool.last_start_error,
        )

    # ------------------------------------------------------------- invocation
    async def call(
        self,
        name: str,
        body: bytes,
        *,
        method: str = "POST",
        path: str = "/",
        query: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> CallResult:
        """Invoke one function through its pool. Never raises for per-request failures."""
        start = time.time()
        try:
            pool = self.pool(name)
        except FunctionNotFound as exc:
            return CallResult(404, _error_body(str(exc)), {}, False, start, time.time(), str(exc))
        called = name
        route = self.canaries.get(name)
        if route is not None:
            canary = self.pools.get(route.canary)
            if route.take(canary is not None and canary.has_free_slot()) and canary is not None:
                name, pool = route.canary, canary
        cold = False
        failure = ""
        for attempt in range(_DELIVERY_ATTEMPTS):
            if attempt and name != called:  # the canary dropped it: the function takes it
                name = called
            pool = self.pools.get(name, pool)  # an update may have replaced it
            try:
                replica, cold_now = await pool.acquire(self.config.cold_start_timeout_s)
            except InvocationError as exc:
                return self._finish(name, pool, 504, _error_body(str(exc)), {}, True, start, exc)
            except PlatformError as exc:
                return self._finish(name, pool, 503, _error_body(str(exc)), {}, True, start, exc)
            cold = cold or cold_now
            owner = replica.pool or pool
            owner.active += 1
            assert replica.handle is not None
            target = path + (f"?{query}" if query else "")
            forward = {k: v for k, v in (headers or {}).items() if k.lower() not in _HOP_BY_HOP}
            sent_at = time.monotonic()
            if not self.runtime.is_alive(replica.handle):
                # dead but not yet noticed: never send to it; deliver to another replica
                owner.active -= 1
                owner.release(replica)
                gone = await self._exit_status_soon(replica)
                owner.replica_gone(replica, gone or ExitStatus(False, "exited"))
                failure = f"{name}: replica {replica.id} " + (gone.detail if gone else "exited")
                continue
            try:
                resp = await self._replicas.request(
                    replica.handle.address, method, target, forward, body
                )
                out_headers = {k: v for k, v in resp.headers if k.lower() not in _HOP_BY_HOP}
                return self._finish(name, pool, resp.status, resp.body, out_headers, cold, start)
            except ReplicaConnectError as exc:
                # nothing was delivered: the replica is dead or deaf; retry elsewhere
                gone = await self._exit_status_soon(replica, wait_s=0.2)
                owner.replica_gone(
                    replica, gone or ExitStatus(False, f"refused a connection ({exc})")
                )
                failure = f"{name}: replica {replica.id} refused the connection"
                continue
            except (ReplicaConnectionLost, TimeoutError) as exc:
                exit_status = await self._exit_status_soon(replica)
                if exit_status is not None:
                    owner.replica_gone(replica, exit_status)
                    dead_before = replica.gone_at is not None and replica.gone_at <= sent_at
                    if not exit_status.oom_killed and (dead_before or _unread(exc)):
                        failure = f"{name}: replica {replica.id} {exit_status.detail}"
                        continue  # the request never reached the handler: deliver it elsewhere
                    error = (
                        f"{name}: replica {replica.id} {exit_status.detail} while handling "
                        "the request"
                    )
                else:
                    error = f"{name}: replica {replica.id} failed: {type(exc).__name__} {exc}"
                return self._finish(name, pool, 502, _error_body(error), {}, cold, start, error)
            finally:
                owner.active -= 1
                owner.release(replica)
        error = f"{failure}; gave up after {_DELIVERY_ATTEMPTS} attempts"
        return self._finish(name, pool, 502, _error_body(error), {}, cold, start, error)

    def _finish(
        self,
        name: str,
        pool: FunctionPool,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        cold: bool,
        start: float,
        error: object = "",
    ) -> CallResult:
        """Count a finished call on the function's current pool (it may have been replaced)."""
        end = time.time()
        self.pools.get(name, pool).record(status, end - start)
        return CallResult(status, body, headers, cold, start, end, str(error))

    async def _exit_status_soon(self, replica: Replica, wait_s: float = 1.0) -> ExitStatus | None:
        """After a dropped connection, give a dying replica a moment to be reaped.

        The pool's exit watcher may have seen the death (and cleaned up) first: its record
        wins, as the runtime may no longer know the replica.
        """
        assert replica.handle is not None
        deadline = time.monotonic() + wait_s
        while True:
            if replica.exit is not None:
                return replica.exit
            status = await self.runtime.exit_status(replica.handle)
            if replica.exit is not None:
                return replica.exit
            if status is not None or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.02)

    async def run_workflow(self, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Run a workflow DAG: stages in dependency order, fan-out in parallel.

        Returns the HTTP status (200, or the first failing stage's) and the response JSON.
        """
        try:
            workflow = self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            return 404, {"error": f"workflow {name!r} not found (known: {known})"}
        started = time.perf_counter()
        status, response = await run_dag(workflow, body, self.call)
        key = (name, status)
        self.workflow_counts[key] = self.workflow_counts.get(key, 0) + 1
        hist = self.workflow_latency.get(name)
        if hist is None:
            hist = self.workflow_latency[name] = LatencyHistogram()
        hist.add(time.perf_counter() - started, ok=200 <= status < 300)
        return status, response


def spec_to_json(spec: FunctionSpec) -> dict[str, Any]:
    """A FunctionSpec as plain JSON (for the gateway's state file)."""
    return {
        "name": spec.name,
        "image": spec.image,
        "handler": spec.handler,
        "env": dict(spec.env),
        "labels": dict(spec.labels),
        "annotations": dict(spec.annotations),
        "limits": spec.limits.to_openfaas(),
        "requests": spec.requests.to_openfaas(),
        "max_inflight": spec.max_inflight,
    }


def spec_from_json(data: Mapping[str, Any]) -> FunctionSpec:
    return FunctionSpec(
        name=data["name"],
        image=data.get("image", ""),
        handler=data.get("handler", ""),
        env=dict(data.get("env") or {}),
        labels=dict(data.get("labels") or {}),
        annotations=dict(data.get("annotations") or {}),
        limits=Limits.from_openfaas(data.get("limits") or None),
        requests=Limits.from_openfaas(data.get("requests") or None),
        max_inflight=int(data.get("max_inflight", 1)),
    )


def _unread(exc: BaseException) -> bool:
    """A reset or broken pipe: the replica's socket closed with our request unread.

    A replica that read the request and then died closes cleanly (the gateway sees a
    disconnect); the kernel answers data that reaches a dead process's socket with a reset.
    An OOM kill is never retried: the request may be what exhausted the memory.
    """
    return isinstance(exc, OSError) and exc.errno in (
        errno.ECONNRESET,
        errno.EPIPE,
    )


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _with_limits(spec: FunctionSpec, limits: Limits) -> FunctionSpec:
    from dataclasses import replace

    return replace(spec, limits=limits)
