"""DockerRuntime against a real engine: start, label, resize live, OOM, adopt, remove."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testbed.core.config import Limits
from testbed.core.errors import DeployError
from testbed.core.platform import FunctionSpec
from testbed.gateway.runtimes.base import ReplicaHandle
from tests.docker.dockerhelp import containers_of, networks_of, run

pytestmark = pytest.mark.docker

MiB = 2**20


def call(handle: ReplicaHandle, body: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    request = urllib.request.Request(
        handle.address + "/", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def health(handle: ReplicaHandle) -> dict[str, Any]:
    with urllib.request.urlopen(handle.address + "/_/health", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def cgroup_cpu_quota(client: Any, container_id: str) -> tuple[int, int]:
    """(quota, period) in microseconds as the kernel has them, read inside the container."""
    script = (
        "if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; else "
        "cd /sys/fs/cgroup/cpu && echo $(cat cpu.cfs_quota_us) $(cat cpu.cfs_period_us); fi"
    )
    code, out = client.containers.get(container_id).exec_run(["sh", "-c", script])
    assert code == 0, out
    quota, period = out.decode().split()
    return (-1 if quota == "max" else int(quota)), int(period)


def cgroup_memory_limit(client: Any, container_id: str) -> int:
    script = (
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    code, out = client.containers.get(container_id).exec_run(["sh", "-c", script])
    assert code == 0, out
    return int(out.decode().split()[0])


def test_start_labels_limits_and_stop(
    runtime: Any, docker_client: Any, probe_spec: FunctionSpec, gateway_id: str
) -> None:
    limits = Limits(cpu_cores=1.0, memory_mb=128)
    handle = run(runtime.start_replica(probe_spec, "probe-a1", limits))
    assert health(handle)["function"] == "probe"
    assert handle.startup_s is not None and handle.startup_s > 0
    assert call(handle, {"spin": 10})["function"] == "probe"
    attrs = docker_client.api.inspect_container(handle.container_id)
    labels = attrs["Config"]["Labels"]
    assert labels["io.aquatope.function"] == "probe"
    assert labels["io.aquatope.replica"] == "probe-a1"
    assert labels["io.aquatope.gateway"] == gateway_id
    # the network holder runs the function's image but is no replica of it (a soak once
    # killed it as one: every replica lost its network)
    holders = [
        c
        for c in containers_of(docker_client, gateway_id)
        if c.labels.get("io.aquatope.role") == "netns"
    ]
    assert len(holders) == 1
    assert holders[0].labels.get("io.aquatope.function") == ""
    host = attrs["HostConfig"]
    assert (host["CpuQuota"], host["CpuPeriod"]) == (100_000, 100_000)
    assert host["Memory"] == host["MemorySwap"] == 128 * MiB
    assert cgroup_cpu_quota(docker_client, handle.container_id) == (100_000, 100_000)
    run(runtime.stop_replica(handle))
    run(runtime.stop_replica(handle))  # idempotent
    ids = {c.id for c in containers_of(docker_client, gateway_id)}
    assert handle.container_id not in ids


def test_live_limits_keep_the_same_container(
    runtime: Any, docker_client: Any, probe_spec: FunctionSpec
) -> None:
    limits = Limits(cpu_cores=2.0, memory_mb=128)
    handle = run(runtime.start_replica(probe_spec, "probe-b1", limits))
    before = docker_client.api.inspect_container(handle.container_id)
    pid = health(handle)["pid"]
    outcome = run(runtime.apply_limits(handle, Limits(cpu_cores=0.5, memory_mb=256)))
    assert outcome.enforced
    assert cgroup_cpu_quota(docker_client, handle.container_id) == (50_000, 100_000)
    assert cgroup_memory_limit(docker_client, handle.container_id) == 256 * MiB
    after = docker_client.api.inspect_container(handle.container_id)
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]  # not restarted
    assert after["RestartCount"] == before["RestartCount"]
    assert health(handle)["pid"] == pid
    # lifting the limits works in place too
    run(runtime.apply_limits(handle, Limits()))
    assert cgroup_cpu_quota(docker_client, handle.container_id)[0] == -1
    assert cgroup_memory_limit(docker_client, handle.container_id) > 256 * MiB


def test_memory_shrink_below_usage_is_refused(
    runtime: Any, docker_client: Any, probe_spec: FunctionSpec
) -> None:
    limits = Limits(cpu_cores=1.0, memory_mb=128)
    handle = run(runtime.start_replica(probe_spec, "probe-c1", limits))
    with pytest.raises(DeployError, match=r"below the current usage.*old limit stays"):
        run(runtime.apply_limits(handle, Limits(cpu_cores=1.0, memory_mb=6)))
    assert cgroup_memory_limit(docker_client, handle.container_id) == 128 * MiB
    assert call(handle, {"spin": 10})["function"] == "probe"


def test_peak_memory_is_read_from_the_containers_cgroup(
    runtime: Any, probe_spec: FunctionSpec
) -> None:
    handle = run(runtime.start_replica(probe_spec, "probe-p1", Limits(memory_mb=256)))
    before = runtime.peak_memory_mb(handle)
    # a Python replica holds at least its interpreter: several MB, below its limit
    assert before is not None and 5.0 < before < 256.0
    call(handle, {"alloc_mb": 80})
    after = runtime.peak_memory_mb(handle)
    assert after is not None and after >= before + 70.0, (before, after)
    run(runtime.stop_replica(handle))


def test_oom_kill_is_reported(runtime: Any, probe_spec: FunctionSpec) -> None:
    limits = Limits(cpu_cores=1.0, memory_mb=48)
    handle = run(runtime.start_replica(probe_spec, "probe-d1", limits))
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(handle, {"alloc_mb": 160})
    deadline = time.monotonic() + 20
    status = None
    while status is None and time.monotonic() < deadline:
        status = run(runtime.exit_status(handle))
    assert status is not None and status.oom_killed
    assert "OOM-killed" in status.detail and "48 MiB" in status.detail


def test_crash_at_import_fails_fast(runtime: Any, handler_dirs: dict[str, Path]) -> None:
    spec = FunctionSpec(
        name="broken", image="aquatope-test/broken:latest", handler=str(handler_dirs["broken"])
    )
    started = time.monotonic()
    with pytest.raises(DeployError, match="exited with code"):
        run(runtime.start_replica(spec, "broken-e1", Limits(cpu_cores=1.0, memory_mb=64)))
    assert time.monotonic() - started < runtime.ready_timeout_s / 2


def test_restarted_gateway_adopts_its_replicas(
    runtime: Any, docker_client: Any, probe_spec: FunctionSpec, gateway_id: str, tmp_path: Path
) -> None:
    from testbed.gateway.runtimes.docker import DockerRuntime

    first = [
        run(runtime.start_replica(probe_spec, f"probe-f{i}", Limits(cpu_cores=1.0, memory_mb=96)))
        for i in range(2)
    ]
    successor = DockerRuntime(state_dir=tmp_path, gateway_id=gateway_id)
    adopted = run(successor.adopt_leftovers())
    assert {h.container_id for h in adopted} == {h.container_id for h in first}
    assert {h.replica_id for h in adopted} == {"probe-f0", "probe-f1"}
    for handle in adopted:
        assert health(handle)["function"] == "probe"
        assert run(successor.exit_status(handle)) is None
        assert 5.0 < (successor.peak_memory_mb(handle) or 0.0) < 96.0  # adopted, still read
    for handle in adopted:
        run(successor.stop_replica(handle))
    run(successor.close())  # no replica left: the network holder and network go too
    assert containers_of(docker_client, gateway_id) == []
    assert networks_of(docker_client, gateway_id) == []


def test_bridge_mode_gives_each_replica_an_address(
    docker_client: Any, probe_image: str, probe_spec: FunctionSpec, gateway_id: str, tmp_path: Path
) -> None:
    from testbed.gateway.runtimes.docker import DockerRuntime, remove_all

    runtime = DockerRuntime(state_dir=tmp_path, gateway_id=gateway_id, network_mode="bridge")
    try:
        handles = [
            run(runtime.start_replica(probe_spec, f"probe-g{i}", Limits(memory_mb=96)))
            for i in range(2)
        ]
        assert len({h.address for h in handles}) == 2
        assert all(h.address.endswith(":8080") for h in handles)
        assert all(health(h)["function"] == "probe" for h in handles)
    finally:
        run(runtime.close())
        assert remove_all(gateway_id=gateway_id) == 2
    assert containers_of(docker_client, gateway_id) == []
    assert networks_of(docker_client, gateway_id) == []
