"""The gateway with ``--backend docker``: live limits in the cgroup, OOM reporting, clean down."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.core.config import Limits
from testbed.core.platform import FunctionSpec, Platform
from tests.docker.dockerhelp import containers_of, networks_of
from tests.helpers import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Two processes spinning in the replica (~0.2 s of CPU each, well over the 0.1 s CFS
# period): 2 CPUs run them side by side, 0.5 CPU needs about four times as long.
CPU_WORK = json.dumps({"spin": 2_000_000, "procs": 2}).encode()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-gateway")


@pytest.fixture(scope="module")
def platform(probe_image: str, home: Path) -> Iterator[Platform]:
    from testbed.backends import connect

    with connect("docker", state_dir=home) as p:
        yield p


def only_container(platform: Platform, name: str) -> str:
    status = wait_until(lambda: platform.status(name).replicas_ready == 1 and platform.status(name))
    (replica,) = status.replicas
    assert replica.container_id
    return replica.container_id


def cpu_quota(client: Any, container_id: str) -> int:
    script = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 "
    script += "/sys/fs/cgroup/cpu.max"
    code, out = client.containers.get(container_id).exec_run(["sh", "-c", script])
    assert code == 0, out
    return int(out.decode().split()[0])


def timed(platform: Platform, name: str) -> tuple[float, float]:
    """(latency seconds, cores the work got: CPU seconds / wall seconds inside the replica)."""
    started = time.perf_counter()
    result = platform.invoke(name, CPU_WORK)
    latency = time.perf_counter() - started
    assert result.ok, result.body
    body = result.json()
    assert isinstance(body, dict)
    return latency, body["cpu_s"] / body["compute_s"]


def test_live_cpu_limit_reaches_the_cgroup_and_the_latency(
    platform: Platform, probe_spec: FunctionSpec, docker_client: Any
) -> None:
    spec = FunctionSpec(
        name="probe-cpu",
        image=probe_spec.image,
        handler=probe_spec.handler,
        labels={"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "1"},
        limits=Limits(cpu_cores=2.0, memory_mb=128),
    )
    platform.deploy(spec)
    container_id = only_container(platform, spec.name)
    assert cpu_quota(docker_client, container_id) == 200_000
    timed(platform, spec.name)  # warm-up
    fast, slow, cores_at_2, cores_at_half = [], [], [], []
    for _ in range(3):  # interleaved, so load from elsewhere hits both sides alike
        platform.set_limits(spec.name, Limits(cpu_cores=2.0, memory_mb=128))
        latency, cores = timed(platform, spec.name)
        fast.append(latency)
        cores_at_2.append(cores)
        platform.set_limits(spec.name, Limits(cpu_cores=0.5, memory_mb=128))
        assert cpu_quota(docker_client, container_id) == 50_000
        latency, cores = timed(platform, spec.name)
        slow.append(latency)
        cores_at_half.append(cores)
    assert only_container(platform, spec.name) == container_id  # resized, not restarted
    assert platform.status(spec.name).limits == Limits(cpu_cores=0.5, memory_mb=128)
    platform.remove(spec.name)
    # The cap itself: the work got about half a core. CFS hands out quota in slices and the
    # two worker processes start and stop outside the throttled window, so the measured share
    # runs 0.55-0.65 on an idle host; 0.75 still sits far below the 2 cores allowed before.
    assert statistics.median(cores_at_half) < 0.75, cores_at_half
    available = statistics.median(cores_at_2)
    if available < 0.9:
        pytest.skip(
            f"host CPU too contended to see a 0.5-core cap in latency: with 2 CPUs allowed "
            f"the replica got only {available:.2f} cores"
        )
    ratio = statistics.median(slow) / statistics.median(fast)
    assert ratio > 1.5, f"0.5 CPU {slow} vs 2 CPUs {fast}: ratio {ratio:.2f}"


def test_too_small_memory_fails_the_request_as_oom(
    platform: Platform, probe_spec: FunctionSpec
) -> None:
    spec = FunctionSpec(
        name="probe-mem",
        image=probe_spec.image,
        handler=probe_spec.handler,
        limits=Limits(cpu_cores=1.0, memory_mb=48),
    )
    platform.deploy(spec)
    assert platform.invoke(spec.name, b'{"alloc_mb": 4}').ok
    result = platform.invoke(spec.name, b'{"alloc_mb": 160}')
    assert not result.ok
    assert b"OOM-killed" in result.body and b"48 MiB" in result.body
    detail = wait_until(lambda: platform.status(spec.name).last_exit, timeout_s=10)
    assert "OOM-killed" in detail
    # the function recovers: a replacement replica serves a request that fits
    assert wait_until(lambda: platform.invoke(spec.name, b'{"alloc_mb": 4}').ok, timeout_s=30)
    platform.remove(spec.name)


def test_killed_container_is_detected_and_replaced(
    platform: Platform, probe_spec: FunctionSpec, docker_client: Any
) -> None:
    spec = FunctionSpec(name="probe-crash", image=probe_spec.image, handler=probe_spec.handler)
    platform.deploy(spec)
    platform.scale(spec.name, replicas=1)
    first = only_container(platform, spec.name)
    docker_client.containers.get(first).kill()

    def replaced() -> str | None:
        status = platform.status(spec.name)
        ids = [r.container_id for r in status.replicas if r.state == "ready"]
        return ids[0] if ids and ids[0] != first else None

    second = wait_until(replaced, timeout_s=30)
    assert second != first
    assert "exited" in platform.status(spec.name).last_exit
    assert platform.invoke(spec.name, b"{}").ok
    platform.remove(spec.name)


def test_killed_container_leaves_routing_at_once_and_no_request_fails(
    platform: Platform, probe_spec: FunctionSpec, docker_client: Any
) -> None:
    """The engine's die event (not the health poll) takes a killed replica out of routing;
    requests that find its port closed are delivered to the other replica."""
    spec = FunctionSpec(
        name="probe-twin",
        image=probe_spec.image,
        handler=probe_spec.handler,
        labels={"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "2"},
    )
    platform.deploy(spec)
    status = wait_until(lambda: (s := platform.status(spec.name)).replicas_ready == 2 and s)
    victim = status.replicas[0].container_id
    container = docker_client.containers.get(victim)
    container.kill()
    container.wait(timeout=30)
    results = [platform.invoke(spec.name, b"{}") for _ in range(30)]
    assert [r.status_code for r in results] == [200] * 30, results[0].body
    detail = wait_until(lambda: platform.status(spec.name).last_exit, timeout_s=10)
    assert "exited with code 137" in detail
    platform.remove(spec.name)


def test_close_leaves_no_container_or_network(
    probe_image: str, probe_spec: FunctionSpec, docker_client: Any, tmp_path: Path
) -> None:
    from testbed.backends import connect
    from testbed.gateway.runtimes.docker import gateway_id_for

    gateway_id = gateway_id_for(tmp_path)
    with connect("docker", state_dir=tmp_path) as platform:
        platform.deploy(probe_spec)
        platform.scale(probe_spec.name, replicas=2)
        wait_until(lambda: platform.status(probe_spec.name).replicas_ready == 2, timeout_s=60)
        assert len(containers_of(docker_client, gateway_id)) == 3  # 2 replicas + netns holder
    assert containers_of(docker_client, gateway_id) == []
    assert networks_of(docker_client, gateway_id) == []


def test_restarted_gateway_adopts_its_containers(
    probe_image: str, probe_spec: FunctionSpec, docker_client: Any, tmp_path: Path
) -> None:
    """A gateway killed with SIGKILL leaves containers; the next one re-adopts them by label."""
    import os
    import signal

    from testbed.backends.openfaas import OpenFaaSPlatform
    from testbed.gateway.auth import ensure_password
    from testbed.gateway.launch import start_gateway
    from testbed.gateway.runtimes.docker import gateway_id_for, remove_all

    password = ensure_password(tmp_path)
    first = start_gateway(backend="docker", state_dir=tmp_path)
    try:
        with OpenFaaSPlatform(first.url, password=password) as p:
            p.deploy(probe_spec)
            p.scale(probe_spec.name, replicas=1)
            container = only_container(p, probe_spec.name)
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait()
        second = start_gateway(backend="docker", state_dir=tmp_path)
        try:
            with OpenFaaSPlatform(second.url, password=password) as p:
                assert only_container(p, probe_spec.name) == container
                assert p.invoke(probe_spec.name, b"{}").ok
        finally:
            second.close()
        assert not containers_of(docker_client, gateway_id_for(tmp_path))
    finally:
        first.close()
        remove_all(tmp_path)
