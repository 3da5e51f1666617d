"""The gateway's replica pool driven directly: real replica processes, no gateway around it.

Each test runs one event loop (``asyncio.run``, bounded by ``_LOOP_S``) in which a
:class:`FunctionPool` starts real ``testbed.runner`` processes on 127.0.0.1 through a
:class:`LocalRuntime`, and checks what the pool exposes: replica states and ``info()``,
``last_start_error``, the errors waiting requests get, counters, limits and its log lines.
The paths pinned here are those the HTTP tests do not reach: failed starts and their back-off,
scale-down while replicas start, adoption after a restart, the health poll, shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from testbed.core.config import Limits
from testbed.core.errors import DeployError, InvocationError, PlatformError
from testbed.core.platform import FunctionSpec, ReplicaInfo
from testbed.gateway.pool import LATENCY_BUCKETS_S, FunctionPool, Replica
from testbed.gateway.runtimes.base import ReplicaHandle
from testbed.gateway.runtimes.cgroups import detect
from testbed.gateway.runtimes.local import LocalRuntime
from tests.helpers import needs

T = TypeVar("T")

LOGGER = "aquatope.gateway"
_LOOP_S = 60.0  # one test's event loop, at most
_WAIT_S = 20.0  # one condition, at most

_CGROUPS = detect("aquatope-probe")
needs_cgroups = needs(_CGROUPS is not None, "no writable cgroup hierarchy on this host")

# GATE: block at import until that file exists (the replica stays "starting");
# FIXED: fail at import until that file exists (the start fails).
HANDLER = """
import os, time

_gate = os.environ.get("GATE")
if _gate:
    for _ in range(3000):  # at most 30 s: the test opens the gate long before
        if os.path.exists(_gate):
            break
        time.sleep(0.01)
_fixed = os.environ.get("FIXED")
if _fixed and not os.path.exists(_fixed):
    raise RuntimeError("not fixed yet")


def handle(event, context):
    return {"statusCode": 200, "body": {"pid": os.getpid()}}
"""


@pytest.fixture
def handler(tmp_path: Path) -> str:
    folder = tmp_path / "handler"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    return str(folder)


def _run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, _LOOP_S))


async def _until(predicate: Callable[[], T], timeout_s: float = _WAIT_S) -> T:
    """Poll ``predicate`` on the event loop until it returns a truthy value."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
    return value


async def _until_async(predicate: Callable[[], Awaitable[T]], timeout_s: float = _WAIT_S) -> T:
    """:func:`_until` for a predicate that must be awaited."""
    deadline = time.monotonic() + timeout_s
    while not (value := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.01)
    return value


@contextlib.asynccontextmanager
async def _pool(spec: FunctionSpec, runtime: LocalRuntime) -> AsyncIterator[FunctionPool]:
    """A pool on ``runtime``; closed, and the runtime with it, whatever the test did (a gate
    in ``spec.env`` is opened first, so that no start stays blocked)."""
    pool = FunctionPool(spec, runtime, limits_enforced=runtime.limits_enforced)
    try:
        yield pool
    finally:
        if "GATE" in spec.env:
            Path(spec.env["GATE"]).touch()
        try:
            await pool.close()
        finally:
            await runtime.close()


def _runtime(tmp_path: Path, *, cgroups: bool = False) -> LocalRuntime:
    # the pool, not the user replicas run as, is under test here (see test_replica_identity)
    return LocalRuntime(state_dir=tmp_path / "home", use_cgroups=cgroups, user="self")


def _recorded(runtime: LocalRuntime) -> dict[str, int]:
    """Replica id -> pid of the processes the runtime has on record (its pids file)."""
    path = runtime.state_dir / "local-replicas.json"
    if not path.exists():
        return {}
    return {rid: int(entry["pid"]) for rid, entry in json.loads(path.read_text()).items()}


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def _ready(pool: FunctionPool, count: int = 1) -> list[Replica]:
    await _until(lambda: pool.ready == count)
    return [r for r in pool.replicas.values() if r.state == "ready"]


def _import_error(function: str) -> str:
    """The start error of ``handler_dirs["broken"]``, which raises at import."""
    return f"{function}: replica failed to start: RuntimeError: this handler fails at import"


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# ------------------------------------------------------------------ bookkeeping
def test_limits_detail_says_advisory_only_when_limits_are_not_enforced(
    tmp_path: Path, handler: str
) -> None:
    spec = FunctionSpec(name="detail", handler=handler)
    runtime = _runtime(tmp_path)
    assert FunctionPool(spec, runtime, limits_enforced=True).limits_detail == ""
    advisory = FunctionPool(spec, runtime, limits_enforced=False)
    assert advisory.limits_detail == "advisory: no writable cgroups"
    assert not advisory.limits_enforced


def test_record_counts_codes_errors_and_latency_buckets(tmp_path: Path, handler: str) -> None:
    pool = FunctionPool(
        FunctionSpec(name="counted", handler=handler), _runtime(tmp_path), limits_enforced=False
    )
    for status, duration_s in [(200, 0.003), (200, 0.005), (404, 0.2), (503, 2.0), (0, 100.0)]:
        pool.record(status, duration_s)
    assert pool.completed == 5
    assert pool.codes == {200: 2, 404: 1, 503: 1, 0: 1}
    assert pool.errors == 2  # 5xx and "no answer" (0); a 404 is the caller's error
    assert pool.duration_sum_s == pytest.approx(102.208)
    expected = [0] * (len(LATENCY_BUCKETS_S) + 1)
    expected[0] = 2  # <= 5 ms, the bound included
    expected[LATENCY_BUCKETS_S.index(0.25)] = 1
    expected[LATENCY_BUCKETS_S.index(2.5)] = 1
    expected[-1] = 1  # over the last bound
    assert pool.buckets == expected


# ------------------------------------------------------------------ failed starts
def test_a_failed_start_fails_every_waiter_with_the_start_error_then_retries_after_1s(
    tmp_path: Path, handler_dirs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    spec = FunctionSpec(name="broken", handler=str(handler_dirs["broken"]))

    async def scenario() -> None:
        async with _pool(spec, _runtime(tmp_path)) as pool:
            waiters = [asyncio.ensure_future(pool.acquire(_WAIT_S)) for _ in range(2)]
            results = await asyncio.gather(*waiters, return_exceptions=True)
            retry = pool._retry_handle  # the back-off timer
            assert retry is not None
            assert 0.5 < retry.when() - asyncio.get_running_loop().time() <= 1.0  # 0.5 s * 2**1
            error = _import_error("broken")
            assert pool.last_start_error == error
            assert [type(r) for r in results] == [DeployError, DeployError]
            assert [str(r) for r in results] == [error, error]
            assert pool.replicas == {} and pool.start_failures == 1
            # while it backs off, a request is answered at once
            with pytest.raises(DeployError) as backing_off:
                await pool.acquire(_WAIT_S)
            assert str(backing_off.value) == (
                f"broken: replicas fail to start (1 in a row): {error}"
            )
            await _until(lambda: pool.start_failures == 2)  # the retry, failing the same way
            assert pool.last_start_error == error and pool.replicas == {}

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _run(scenario())
    assert _messages(caplog, logging.WARNING) == [
        f"broken: replica start failed ({n} in a row, backing off): {_import_error('broken')}"
        for n in (1, 2)
    ]


def test_after_failed_starts_the_pool_probes_with_one_replica_at_a_time(
    tmp_path: Path, handler_dirs: dict[str, Path]
) -> None:
    spec = FunctionSpec(name="prober", handler=str(handler_dirs["broken"]))

    async def scenario() -> None:
        async with _pool(spec, _runtime(tmp_path)) as pool:
            assert pool.set_target(2) == 2
            assert pool.starting == 2
            await _until(lambda: pool.start_failures == 2 and not pool.replicas)
            await _until(lambda: pool.replicas)  # the retry
            assert pool.starting == 1 and len(pool.replicas) == 1

    _run(scenario())


def test_repeated_start_failures_are_logged_at_2_10_and_every_100th(
    tmp_path: Path, handler_dirs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The same error again is logged on the 2nd, 10th and every 100th failure only."""
    broken = str(handler_dirs["broken"])

    async def scenario() -> None:
        runtime = _runtime(tmp_path)
        async with (
            _pool(FunctionSpec(name="third", handler=broken), runtime) as third,
            _pool(FunctionSpec(name="hundredth", handler=broken), runtime) as hundred,
        ):
            for pool in (third, hundred):
                pool.set_target(1)
            await _until(lambda: third.start_failures == hundred.start_failures == 1)
            # as if they had failed this often; their next try comes after 1 s
            third.start_failures, hundred.start_failures = 2, 99
            caplog.clear()
            await _until(lambda: third.start_failures == 3 and hundred.start_failures == 100)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _run(scenario())
    assert _messages(caplog, logging.WARNING) == [
        "hundredth: replica start failed (100 in a row, backing off): " + _import_error("hundredth")
    ]


def test_a_runtime_bug_in_a_start_is_a_failed_start_naming_the_exception(
    tmp_path: Path, handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a TestbedError (a NUL byte in the environment makes ``exec`` raise ValueError):
    logged with its traceback, and waiting requests get a DeployError naming it."""
    spec = FunctionSpec(name="envbug", handler=handler, env={"BAD": "nul\x00byte"})

    runtime = _runtime(tmp_path, cgroups=True)

    async def scenario() -> None:
        async with _pool(spec, runtime) as pool:
            with pytest.raises(DeployError) as failed:
                await pool.acquire(_WAIT_S)
            assert str(failed.value) == pool.last_start_error == "ValueError: embedded null byte"
            assert pool.replicas == {} and pool.start_failures == 1
            if runtime.cgroups is not None:  # the group made for the replica is gone too
                roots = {runtime.cgroups.cpu_root, runtime.cgroups.memory_root}
                assert [p for root in roots for p in root.iterdir() if p.is_dir()] == []

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        _run(scenario())
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["replica start of envbug failed"]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ValueError


def test_a_pool_recovers_once_its_replicas_start_and_says_after_how_many_failures(
    tmp_path: Path, handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    fixed = tmp_path / "fixed"
    spec = FunctionSpec(name="fixable", handler=handler, env={"FIXED": str(fixed)})

    async def scenario() -> Replica:
        async with _pool(spec, _runtime(tmp_path)) as pool:
            pool.set_target(1)
            await _until(lambda: pool.start_failures == 1)
            fixed.touch()
            (replica,) = await _ready(pool)  # the retry, a second later
            assert pool.start_failures == 0
            served, cold = await pool.acquire(_WAIT_S)
            assert served is replica and not cold
            pool.release(served)
            return replica

    with caplog.at_level(logging.INFO, logger=LOGGER):
        replica = _run(scenario())
    assert _messages(caplog, logging.INFO) == [
        f"fixable: replica {replica.id} started after 1 failure(s)"
    ]


# ------------------------------------------------------------------ waiting
def test_timeouts_name_what_the_request_waited_for(tmp_path: Path, handler: str) -> None:
    gate = tmp_path / "gate"
    spec = FunctionSpec(name="slow", handler=handler, env={"GATE": str(gate)}, max_inflight=1)

    async def scenario() -> None:
        async with _pool(spec, _runtime(tmp_path)) as pool:
            with pytest.raises(InvocationError) as cold:
                await pool.acquire(0.05)  # the replica cannot start before the gate opens
            assert str(cold.value) == "slow: timed out after 0.05s waiting for a replica to start"
            (starting,) = pool.replicas.values()
            assert re.fullmatch(r"slow-[0-9a-f]{8}", starting.id)
            gate.touch()
            await _ready(pool)
            held, _ = await pool.acquire(_WAIT_S)
            with pytest.raises(InvocationError) as busy:
                await pool.acquire(0.05)  # its only slot is taken
            assert str(busy.value) == "slow: timed out after 0.05s waiting for a free replica"
            pool.release(held)

    _run(scenario())


# ------------------------------------------------------------------ scaling down
def test_scaling_down_while_replicas_start_dooms_the_newest_and_stops_them_once_up(
    tmp_path: Path, handler: str
) -> None:
    gate = tmp_path / "gate"
    spec = FunctionSpec(name="doomed", handler=handler, env={"GATE": str(gate)})

    async def scenario() -> None:
        runtime = _runtime(tmp_path)
        async with _pool(spec, runtime) as pool:
            pool.set_target(3)
            oldest, *newer = pool.replicas.values()
            await _until(lambda: len(_recorded(runtime)) == 3)  # all three processes spawned
            pids = _recorded(runtime)
            pool.set_target(1)
            assert pool.starting == 1
            assert [r.doomed for r in (oldest, *newer)] == [False, True, True]
            gate.touch()
            tasks = [r.task for r in (oldest, *newer) if r.task is not None]
            await asyncio.wait(tasks, timeout=_WAIT_S)
            assert list(pool.replicas) == [oldest.id] and oldest.state == "ready"
            assert _recorded(runtime) == {oldest.id: pids[oldest.id]}
            await _until(lambda: not any(_alive(pids[r.id]) for r in newer))

    _run(scenario())


# ------------------------------------------------------------------ adoption
def test_an_adopted_replica_serves_at_once_and_counts_as_just_used(
    tmp_path: Path, handler: str
) -> None:
    """A replica left by an earlier gateway is ready as found; on scale-down the pool's own
    replica, idle since before the adoption, goes first, and leaves the listing at once."""
    spec = FunctionSpec(name="adopter", handler=handler)

    async def scenario() -> None:
        runtime = _runtime(tmp_path)
        async with _pool(spec, runtime) as pool:
            pool.set_target(1)
            (own,) = await _ready(pool)
            assert own.handle is not None and own.handle.pid is not None
            own_pid = own.handle.pid
            handle = await runtime.start_replica(spec, "adopter-leftover", spec.limits)
            pool.adopt(handle)
            adopted = pool.replicas[handle.replica_id]
            assert pool.ready == 2
            info = adopted.info()
            assert info == ReplicaInfo(
                id="adopter-leftover",
                state="ready",
                address=handle.address,
                started_at=handle.started_at,
                ready_at=handle.ready_at,
                startup_s=handle.startup_s,
                inflight=0,
                container_id=None,
                peak_memory_mb=info.peak_memory_mb,
            )
            assert info.ready_at is not None and info.started_at < info.ready_at
            pool.set_target(1)
            assert list(pool.replicas) == ["adopter-leftover"]
            assert own.state == "stopping"
            await _until(lambda: not _alive(own_pid))
            served, cold = await pool.acquire(_WAIT_S)
            assert served is adopted and not cold
            pool.release(served)

    _run(scenario())


# ------------------------------------------------------------------ deaths
def test_the_health_poll_notices_a_replica_whose_exit_notification_was_lost(
    tmp_path: Path, handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec = FunctionSpec(name="polled", handler=handler)

    async def scenario() -> str:
        runtime = _runtime(tmp_path)
        async with _pool(spec, runtime) as pool:
            pool.set_target(1)
            (replica,) = await _ready(pool)
            handle = replica.handle
            assert handle is not None and handle.pid is not None and replica.watcher is not None
            replica.watcher.cancel()  # the exit notification is lost
            await asyncio.wait([replica.watcher])
            held, _ = await pool.acquire(_WAIT_S)  # a request still holds it
            assert held is replica
            os.kill(handle.pid, signal.SIGKILL)
            await _until_async(lambda: runtime.exit_status(handle))
            assert replica.id in pool.replicas  # nobody noticed yet
            await pool.check_replicas()
            detail = "exited with code -9 (killed by SIGKILL)"
            assert replica.id not in pool.replicas
            assert replica.state == "stopping" and replica.info().state == "stopping"
            assert replica.exit is not None and replica.exit.detail == detail
            assert not replica.exit.oom_killed and pool.oom_kills == 0
            assert pool.last_exit == f"{replica.id}: {detail}"
            assert pool.starting == 1  # its replacement
            pool.release(held)
            await _ready(pool)
            return replica.id

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        replica_id = _run(scenario())
    assert _messages(caplog, logging.WARNING) == [
        f"polled: replica {replica_id} gone: exited with code -9 (killed by SIGKILL)"
    ]


@needs_cgroups
def test_oom_kills_are_counted_one_by_one(tmp_path: Path, handler_dirs: dict[str, Path]) -> None:
    spec = FunctionSpec(name="hog", handler=str(handler_dirs["hog"]), limits=Limits(memory_mb=96))

    async def scenario() -> None:
        async with _pool(spec, _runtime(tmp_path, cgroups=True)) as pool:
            pool.set_target(1)
            seen: set[str] = set()
            async with httpx.AsyncClient(timeout=_WAIT_S) as client:
                for n in (1, 2):
                    (replica,) = await _until(
                        lambda: [r for r in pool.replicas.values() if r.state == "ready"]
                    )
                    assert replica.id not in seen and replica.handle is not None
                    seen.add(replica.id)
                    with contextlib.suppress(httpx.HTTPError):  # the process dies answering
                        await client.post(f"{replica.handle.address}/", content=b"300")
                    await _until(lambda r=replica: r.id not in pool.replicas)
                    assert pool.oom_kills == n
                    assert pool.last_exit == f"{replica.id}: OOM-killed (memory limit too small)"

    _run(scenario())


# ------------------------------------------------------------------ limits
def test_set_limits_reports_how_the_runtime_applied_them(tmp_path: Path, handler: str) -> None:
    spec = FunctionSpec(name="advisory", handler=handler)

    async def scenario() -> None:
        async with _pool(spec, _runtime(tmp_path)) as pool:
            assert pool.limits_detail == "advisory: no writable cgroups"
            await pool.set_limits(Limits(cpu_cores=0.5))  # no replica to ask yet
            assert pool.limits == Limits(cpu_cores=0.5)
            assert pool.limits_detail == "advisory: no writable cgroups"
            pool.set_target(1)
            await _ready(pool)
            await pool.set_limits(Limits(memory_mb=64))
            assert pool.limits == Limits(memory_mb=64) and not pool.limits_enforced
            assert pool.limits_detail == "no writable cgroup hierarchy: limits are advisory"

    _run(scenario())


@needs_cgroups
@pytest.mark.skipif(
    _CGROUPS is not None and _CGROUPS.version != 1,
    reason="cgroup v1 refuses a memory limit below usage; v2 OOM-kills instead",
)
def test_a_refused_limit_rolls_back_what_was_already_written(tmp_path: Path, handler: str) -> None:
    """The CPU quota is written before the memory limit: when the kernel refuses the memory
    limit, the quota already changed goes back too."""
    spec = FunctionSpec(
        name="limited", handler=handler, limits=Limits(cpu_cores=1.0, memory_mb=256)
    )

    async def scenario() -> None:
        runtime = _runtime(tmp_path, cgroups=True)
        async with _pool(spec, runtime) as pool:
            assert pool.limits_enforced and pool.limits_detail == ""
            pool.set_target(1)
            (replica,) = await _ready(pool)
            cgroups = runtime.cgroups
            assert cgroups is not None
            memory = cgroups.memory_root / replica.id / "memory.limit_in_bytes"
            assert cgroups.read_cpu_quota(replica.id) == 1.0
            assert int(memory.read_text()) == 256 << 20
            applied = Limits(cpu_cores=0.5, memory_mb=128)
            await pool.set_limits(applied)
            assert pool.limits_enforced and pool.limits_detail == "cgroup v1"
            assert cgroups.read_cpu_quota(replica.id) == 0.5
            assert int(memory.read_text()) == 128 << 20
            with pytest.raises(DeployError, match="kernel refused memory limit 4 MiB"):
                await pool.set_limits(Limits(cpu_cores=0.25, memory_mb=4))
            assert pool.limits == applied
            assert cgroups.read_cpu_quota(replica.id) == 0.5  # not left at 0.25
            assert int(memory.read_text()) == 128 << 20

    _run(scenario())


# ------------------------------------------------------------------ shutdown
def test_close_fails_queued_requests_waits_for_starts_and_stops_every_process(
    tmp_path: Path, handler: str
) -> None:
    gate = tmp_path / "gate"
    spec = FunctionSpec(name="closing", handler=handler, env={"GATE": str(gate)}, max_inflight=1)

    async def scenario() -> None:
        runtime = _runtime(tmp_path)
        async with _pool(spec, runtime) as pool:
            ungated = FunctionSpec(name="closing", handler=spec.handler)
            leftover = await runtime.start_replica(ungated, "closing-leftover", spec.limits)
            assert leftover.pid is not None
            leftover_pid = leftover.pid
            pool.adopt(leftover)
            held, _ = await pool.acquire(_WAIT_S)  # the adopted replica's only slot
            queued = asyncio.ensure_future(pool.acquire(_WAIT_S))
            await _until(lambda: pool.queued == 1)
            pool.set_target(2)
            (starting,) = (r for r in pool.replicas.values() if r.state == "starting")
            await _until(lambda: starting.id in _recorded(runtime))  # spawned, blocked
            start_pid = _recorded(runtime)[starting.id]

            closing = asyncio.ensure_future(pool.close())
            with pytest.raises(InvocationError, match=r"^closing: function removed$"):
                await queued
            await _until(lambda: closing.done() or not _alive(leftover_pid))
            assert not closing.done()  # still waiting for the start to finish
            gate.touch()
            await closing
            assert starting.task is not None and starting.task.done()
            assert _recorded(runtime) == {}
            assert not _alive(start_pid) and not _alive(leftover_pid)
            assert pool.replicas == {}

            with pytest.raises(PlatformError, match="closing: function was removed or replaced"):
                await pool.acquire(_WAIT_S)
            pool.set_target(2)
            assert pool.replicas == {}  # a closed pool starts nothing
            assert held.id == "closing-leftover"

    _run(scenario())


class _StopFailsRuntime(LocalRuntime):
    """A local runtime whose stop raises after stopping (a runtime bug)."""

    async def stop_replica(self, handle: ReplicaHandle) -> None:
        await super().stop_replica(handle)
        raise RuntimeError("stop failed on purpose")


def test_a_failing_stop_is_logged_and_close_still_returns(
    tmp_path: Path, handler: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec = FunctionSpec(name="stubborn", handler=handler)

    async def scenario() -> tuple[str, int]:
        runtime = _StopFailsRuntime(state_dir=tmp_path / "home", use_cgroups=False)
        async with _pool(spec, runtime) as pool:
            pool.set_target(1)
            (replica,) = await _ready(pool)
            assert replica.handle is not None and replica.handle.pid is not None
            await pool.close()
            assert pool.replicas == {}
            return replica.id, replica.handle.pid

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        replica_id, pid = _run(scenario())
    assert not _alive(pid)
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"stopping {replica_id} failed"]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError
