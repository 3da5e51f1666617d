"""The request path survives replicas coming and going (real gateway, real replica processes).

A replica that dies leaves routing through the runtime's exit notification; a request that
never reached a replica is delivered to another one; a request that died inside a replica is
a 502 naming the cause; a code-changing update hands queued requests to the new replicas.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.gateway.auth import ensure_password
from testbed.gateway.launch import start_gateway
from testbed.gateway.runtimes.cgroups import detect
from tests.helpers import wait_until

needs_cgroups = pytest.mark.skipif(
    detect("aquatope-probe") is None, reason="no writable cgroup hierarchy on this host"
)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OpenFaaSPlatform, httpx.Client, httpx.Client, Path]]:
    home = tmp_path_factory.mktemp("home")
    # a short cold-start timeout: a request stranded on a dead queue fails in 15 s, not 60
    process = start_gateway(state_dir=home, cold_start_timeout_s=15)
    password = ensure_password(home)
    platform = OpenFaaSPlatform(process.url, password=password)
    platform.own(process)
    admin = httpx.Client(base_url=process.url, auth=("admin", password), timeout=60)
    anon = httpx.Client(base_url=process.url, timeout=60)
    try:
        yield platform, admin, anon, home
    finally:
        admin.close()
        anon.close()
        platform.close()


def _deploy(admin: httpx.Client, name: str, handler: Path, *, replicas: int, **extra) -> None:  # type: ignore[no-untyped-def]
    body = {
        "service": name,
        "annotations": {"com.aquatope.handler": str(handler)},
        "labels": {
            "com.openfaas.scale.min": str(replicas),
            "com.openfaas.scale.max": str(replicas),
        },
        **extra,
    }
    r = admin.post("/system/functions", json=body)
    assert r.status_code == 202, r.text


def _replica_pids(home: Path, function: str) -> set[int]:
    recorded = json.loads((home / "local-replicas.json").read_text())
    return {int(e["pid"]) for e in recorded.values() if e["function"] == function}


def _kill_and_wait(pid: int) -> None:
    """SIGKILL ``pid`` and wait until every thread of it has exited (its pidfd is readable).

    A zombie leader in ``/proc`` is not enough: other threads may still hold its sockets.
    """
    fd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(20_000), f"pid {pid} did not exit after SIGKILL"
    finally:
        os.close(fd)


def test_sigkilled_replica_leaves_routing_at_once(gateway, handler_dirs) -> None:
    platform, admin, anon, home = gateway
    _deploy(admin, "twin", handler_dirs["echo"], replicas=2)
    wait_until(lambda: platform.status("twin").replicas_ready == 2, timeout_s=60)
    served = anon.post("/function/twin", content=b"warm").json()["pid"]
    assert served in _replica_pids(home, "twin")
    _kill_and_wait(served)
    answers = [anon.post("/function/twin", content=b"after") for _ in range(30)]
    assert [r.status_code for r in answers] == [200] * 30, [r.text for r in answers[:3]]
    assert served not in {r.json()["pid"] for r in answers}
    status = wait_until(lambda: (s := platform.status("twin")) and "SIGKILL" in s.last_exit and s)
    assert "exited with code -9" in status.last_exit
    wait_until(lambda: platform.status("twin").replicas_ready == 2, timeout_s=60)


def test_request_to_a_replica_killed_while_idle_is_delivered_elsewhere(
    gateway, handler_dirs
) -> None:
    """Kill every replica at once: the request finds only refused ports, then a new replica."""
    platform, admin, anon, _ = gateway
    _deploy(admin, "phoenix", handler_dirs["echo"], replicas=1)
    wait_until(lambda: platform.status("phoenix").replicas_ready == 1, timeout_s=60)
    first = anon.post("/function/phoenix", content=b"1").json()["pid"]
    _kill_and_wait(first)
    r = anon.post("/function/phoenix", content=b"2")
    assert r.status_code == 200, r.text
    assert r.json()["pid"] != first


@needs_cgroups
def test_oom_inside_a_replica_is_a_502_naming_the_cause_and_others_keep_serving(
    gateway, handler_dirs
) -> None:
    platform, admin, anon, _ = gateway
    _deploy(admin, "hogs", handler_dirs["hog"], replicas=2, limits={"memory": "96Mi"})
    wait_until(lambda: platform.status("hogs").replicas_ready == 2, timeout_s=60)
    r = anon.post("/function/hogs", content=b"300")
    assert r.status_code == 502
    assert "OOM-killed" in r.json()["error"] and "while handling" in r.json()["error"]
    answers = [anon.post("/function/hogs", content=b"5").status_code for _ in range(20)]
    assert answers == [200] * 20
    assert platform.metrics().functions["hogs"].errors >= 1


def _invocations(text: str, function: str) -> int:
    pattern = rf'gateway_function_invocation_total\{{code="200",function_name="{function}"\}} (\S+)'
    match = re.search(pattern, text)
    return int(float(match.group(1))) if match else 0


def _queued(text: str, function: str) -> int:
    match = re.search(rf'gateway_function_queued\{{function_name="{function}"\}} (\S+)', text)
    return int(float(match.group(1))) if match else 0


def test_code_changing_update_hands_queued_requests_to_the_new_pool(gateway, handler_dirs) -> None:
    platform, admin, anon, _ = gateway
    handler = str(handler_dirs["burn"])
    _deploy(admin, "busy", handler_dirs["burn"], replicas=1)
    wait_until(lambda: platform.status("busy").replicas_ready == 1, timeout_s=60)
    for _ in range(3):
        assert anon.post("/function/busy", json={"n": 10}).status_code == 200
    before = _invocations(anon.get("/metrics").text, "busy")
    assert before == 3

    def call(_: int) -> int:
        with httpx.Client(base_url=str(anon.base_url), timeout=60) as client:
            return client.post("/function/busy", json={"n": 200_000}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(call, i) for i in range(8)]
        wait_until(lambda: _queued(anon.get("/metrics").text, "busy") >= 4, timeout_s=30)
        update = {
            "service": "busy",
            "annotations": {"com.aquatope.handler": handler},
            "envVars": {"GENERATION": "2"},
            "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "1"},
        }
        r = admin.put("/system/functions", json=update)
        assert r.status_code == 202, r.text
        codes = [f.result() for f in futures]
    assert codes == [200] * 8
    after = _invocations(anon.get("/metrics").text, "busy")
    assert after == before + 8
    assert platform.status("busy").spec.env["GENERATION"] == "2"
