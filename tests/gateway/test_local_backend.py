"""The local backend: replicas are real processes, limits are real cgroups, crashes are noticed."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from testbed.core.canary import set_canary
from testbed.core.config import Limits
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec
from testbed.gateway.runtimes.cgroups import detect
from tests.helpers import needs, wait_until

needs_cgroups = needs(
    detect("aquatope-probe") is not None, "no writable cgroup hierarchy on this host"
)


def _cgroup_file(pid: int, controller: str, filename: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/") / filename
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            v2 = {"cfs_quota": "cpu.max", "memory.limit_in_bytes": "memory.max"}
            return Path("/sys/fs/cgroup") / path.lstrip("/") / v2.get(filename, filename)
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def _deploy(platform, name: str, handler: Path, **kwargs) -> None:  # type: ignore[no-untyped-def]
    platform.deploy(FunctionSpec(name=name, handler=str(handler), **kwargs))


def test_invalid_spec_is_rejected_before_deploy(handler_dirs) -> None:
    with pytest.raises(ConfigError, match="max_inflight"):
        FunctionSpec(name="x", handler=str(handler_dirs["echo"]), max_inflight=0)
    with pytest.raises(ConfigError, match="scale"):
        FunctionSpec(
            name="x", labels={"com.openfaas.scale.min": "3", "com.openfaas.scale.max": "1"}
        )


@needs_cgroups
def test_cpu_and_memory_limits_are_cgroup_limits_changed_live(local_platform, handler_dirs) -> None:
    _deploy(
        local_platform, "limited", handler_dirs["burn"], limits=Limits(cpu_cores=1.0, memory_mb=256)
    )
    pid = local_platform.invoke("limited", b'{"n": 10}').json()["pid"]
    quota = _cgroup_file(pid, "cpu", "cpu.cfs_quota_us")
    memory = _cgroup_file(pid, "memory", "memory.limit_in_bytes")
    assert int(quota.read_text()) == 100_000
    assert int(memory.read_text()) == 256 * 1024 * 1024
    assert local_platform.status("limited").limits_enforced

    local_platform.set_limits("limited", Limits(cpu_cores=0.5, memory_mb=192))
    assert int(quota.read_text()) == 50_000
    assert int(memory.read_text()) == 192 * 1024 * 1024
    # same process: changed in place, no restart
    assert local_platform.invoke("limited", b'{"n": 10}').json()["pid"] == pid
    assert local_platform.status("limited").limits == Limits(cpu_cores=0.5, memory_mb=192)


@needs_cgroups
def test_cpu_limit_slows_a_cpu_bound_function(local_platform, handler_dirs) -> None:
    _deploy(local_platform, "burner", handler_dirs["burn"], limits=Limits(cpu_cores=1.0))
    body = b'{"n": 300000}'
    pid = local_platform.invoke("burner", body).json()["pid"]  # warm

    def best_of(n: int) -> float:
        return min(local_platform.invoke("burner", body).duration_s for _ in range(n))

    full = best_of(3)
    local_platform.set_limits("burner", Limits(cpu_cores=0.1))
    throttled = best_of(3)
    stat = _cgroup_file(pid, "cpu", "cpu.stat").read_text()
    nr_throttled = int(stat.split("nr_throttled")[1].split()[0])
    assert nr_throttled > 0
    # a tenth of a core: the kernel lets it run 10 ms of every 100 ms
    assert throttled > 2.0 * full, (full, throttled)


@needs_cgroups
def test_memory_limit_too_small_is_reported_as_oom(local_platform, handler_dirs) -> None:
    _deploy(local_platform, "hog", handler_dirs["hog"], limits=Limits(memory_mb=96))
    result = local_platform.invoke("hog", b"300")
    assert result.status_code == 502
    assert b"OOM" in result.body
    status = wait_until(lambda: (s := local_platform.status("hog")) and "OOM" in s.last_exit and s)
    assert "OOM-killed" in status.last_exit
    assert status.limits_enforced and "OOM" not in status.limits_detail
    # a small request still works on the replacement replica
    assert local_platform.invoke("hog", b"10").status_code == 200


def test_crashed_replica_is_replaced(local_platform, handler_dirs) -> None:
    _deploy(local_platform, "crashy", handler_dirs["echo"])
    local_platform.scale("crashy", replicas=1)
    wait_until(lambda: local_platform.status("crashy").replicas_ready == 1)
    pid = local_platform.invoke("crashy", b"x").json()["pid"]
    os.kill(pid, signal.SIGKILL)
    new_pid = wait_until(
        lambda: (
            (r := local_platform.invoke("crashy", b"x")).ok
            and r.json()["pid"] != pid
            and r.json()["pid"]
        )
    )
    assert new_pid != pid
    assert "exited with code -9" in local_platform.status("crashy").last_exit


GATED = """
import json, os, time

GATE = {gate!r}

def wait_for_gate():
    for _ in range(6000):  # at most 60 s: the test opens the gate long before
        if os.path.exists(GATE):
            return
        time.sleep(0.01)
    raise RuntimeError("gate never opened")

{at_import}

def handle(event, context):
    start = time.monotonic()
    if {at_request}:
        wait_for_gate()
    return {{"statusCode": 200, "body": {{"pid": os.getpid(), "tag": event.body.decode(),
            "start": start, "end": time.monotonic()}}}}
"""


def _gated_handler(folder: Path, gate: Path, *, at_import: bool) -> Path:
    """A handler that blocks until ``gate`` exists: at import (the replica cannot become
    ready) or in the request tagged ``first`` (the replica stays busy)."""
    folder.mkdir()
    (folder / "handler.py").write_text(
        GATED.format(
            gate=str(gate),
            at_import="wait_for_gate()" if at_import else "",
            at_request="event.body == b'first'",
        )
    )
    return folder


def test_max_inflight_queues_requests_fifo(local_platform, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    gate = tmp_path / "gate"
    _deploy(
        local_platform,
        "single",
        _gated_handler(tmp_path / "h", gate, at_import=False),
        max_inflight=1,
    )
    local_platform.scale("single", replicas=1)
    wait_until(lambda: local_platform.status("single").replicas_ready == 1)
    gauges = lambda: local_platform.metrics().functions["single"]  # noqa: E731
    tags = ["first", *(f"q{i}" for i in range(1, 6))]
    with ThreadPoolExecutor(len(tags)) as pool:
        futures = [pool.submit(local_platform.invoke, "single", tags[0].encode())]
        wait_until(lambda: gauges().inflight == 1)
        for k, tag in enumerate(tags[1:], 1):  # queue them one by one, in a known order
            futures.append(pool.submit(local_platform.invoke, "single", tag.encode()))
            wait_until(lambda k=k: gauges().queued == k)
        gate.touch()
        results = [f.result().json() for f in futures]
    assert len({r["pid"] for r in results}) == 1
    served = sorted(results, key=lambda r: r["start"])
    assert [r["tag"] for r in served] == tags  # first in, first out
    for before, after in itertools.pairwise(served):
        assert before["end"] <= after["start"]  # one at a time on the replica


def test_every_request_of_a_burst_from_zero_is_a_cold_start(local_platform, tmp_path) -> None:
    """Cold means "no ready replica when it arrived", also while one is already starting
    (sim twin: tests/sim/test_sim_platform.py::test_cold_start_exactly_when_no_ready_replica)."""
    from concurrent.futures import ThreadPoolExecutor

    gate = tmp_path / "gate"
    _deploy(
        local_platform,
        "burst",
        _gated_handler(tmp_path / "h", gate, at_import=True),
        max_inflight=4,
    )
    assert local_platform.status("burst").target_replicas == 0
    gauges = lambda: local_platform.metrics().functions["burst"]  # noqa: E731
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(local_platform.invoke, "burst", b"x") for _ in range(4)]
        wait_until(lambda: gauges().started == 4)  # all four arrived; none can be served yet
        assert local_platform.status("burst").replicas_ready == 0
        gate.touch()
        results = [f.result() for f in futures]
    assert [(r.status_code, r.cold_start) for r in results] == [(200, True)] * 4, results
    assert gauges().cold_starts == 4
    status = local_platform.status("burst")
    assert status.target_replicas == 1  # scaled from zero to one, not to four
    assert status.replicas_ready + status.replicas_starting == 1


def test_close_leaves_no_replica_process(tmp_path, handler_dirs) -> None:
    from testbed.backends import connect

    with connect("local", state_dir=tmp_path) as platform:
        _deploy(platform, "echo", handler_dirs["echo"])
        platform.scale("echo", replicas=2)
        wait_until(lambda: platform.status("echo").replicas_ready == 2)
        pids = [r.json()["pid"] for r in (platform.invoke("echo", b"") for _ in range(6))]
    for pid in set(pids):
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout_s=10)


def test_replicas_die_with_a_killed_gateway_and_up_cleans_records(tmp_path, handler_dirs) -> None:
    from testbed.backends.openfaas import OpenFaaSPlatform
    from testbed.gateway.auth import ensure_password
    from testbed.gateway.launch import start_gateway
    from testbed.gateway.runtimes.local import kill_recorded_replicas

    password = ensure_password(tmp_path)
    gateway = start_gateway(state_dir=tmp_path)
    with OpenFaaSPlatform(gateway.url, password=password) as platform:
        _deploy(platform, "echo", handler_dirs["echo"])
        pid = platform.invoke("echo", b"").json()["pid"]
    assert (tmp_path / "local-replicas.json").exists()
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.proc.wait()
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=10)
    kill_recorded_replicas(tmp_path)
    assert not (tmp_path / "local-replicas.json").exists()


def test_cold_start_timing_is_reported(local_platform, handler_dirs) -> None:
    _deploy(local_platform, "timed", handler_dirs["echo"])
    start = time.monotonic()
    result = local_platform.invoke("timed", b"")
    assert result.cold_start
    replica = local_platform.status("timed").replicas[0]
    assert replica.startup_s is not None and 0 < replica.startup_s < time.monotonic() - start + 1


def test_gateway_restores_its_functions_after_a_crash(tmp_path, handler_dirs) -> None:
    from testbed.backends.openfaas import OpenFaaSPlatform
    from testbed.gateway.auth import ensure_password
    from testbed.gateway.launch import start_gateway

    password = ensure_password(tmp_path)
    first = start_gateway(state_dir=tmp_path)
    with OpenFaaSPlatform(first.url, password=password) as platform:
        _deploy(platform, "keeper", handler_dirs["echo"], limits=Limits(cpu_cores=0.5))
        platform.scale("keeper", replicas=2)
        set_canary(platform, "keeper", Limits(memory_mb=256), share=1.0)
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait()
    second = start_gateway(state_dir=tmp_path)
    try:
        with OpenFaaSPlatform(second.url, password=password) as platform:
            status = platform.status("keeper")
            assert status.target_replicas == 2
            assert status.limits == Limits(cpu_cores=0.5)
            wait_until(lambda: platform.status("keeper").replicas_ready == 2)
            # its canary came back with its route: a free canary at share 1 takes the call
            wait_until(lambda: platform.status("keeper-canary").replicas_ready == 1)
            assert platform.status("keeper-canary").limits == Limits(cpu_cores=0.5, memory_mb=256)
            assert platform.invoke("keeper", b"back").json()["body"] == "back"
            assert platform.metrics().functions["keeper-canary"].completed == 1
    finally:
        second.close()
    assert not (tmp_path / "gateway-functions-local.json").exists()


def test_scale_on_demand_grows_the_pool(local_platform, handler_dirs) -> None:
    """With the scale-on-demand label a busy pool grows instead of queueing (sim twin:
    tests/sim/test_sim_platform.py::test_scale_on_demand_starts_a_replica_per_unabsorbed_request)."""
    from concurrent.futures import ThreadPoolExecutor

    _deploy(
        local_platform,
        "bursty",
        handler_dirs["burn"],
        labels={"com.aquatope.scale-on-demand": "true", "com.openfaas.scale.max": "3"},
    )
    local_platform.scale("bursty", replicas=1)
    wait_until(lambda: local_platform.status("bursty").replicas_ready == 1)
    before = local_platform.metrics().functions["bursty"].cold_starts
    body = b'{"n": 200000}'  # long enough that the three overlap
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: local_platform.invoke("bursty", body), range(3)))
    assert all(r.ok for r in results)
    status = local_platform.status("bursty")
    assert status.target_replicas == 3
    wait_until(lambda: local_platform.status("bursty").replicas_ready == 3)
    cold = local_platform.metrics().functions["bursty"].cold_starts - before
    assert cold == sum(r.cold_start for r in results) == 2
