"""Cgroups left by a killed gateway are removed by the next gateway start and by ``down``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.platform import FunctionSpec
from testbed.gateway.auth import ensure_password
from testbed.gateway.launch import start_gateway
from testbed.gateway.runtimes.cgroups import detect, remove_stale_groups
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(
    detect("aquatope-probe") is None, reason="no writable cgroup hierarchy on this host"
)


def _groups_of(pid: int) -> set[Path]:
    """The cgroup directories (cpu, memory) holding ``pid``."""
    out = set()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in ("cpu", "memory"):
            if controller in controllers.split(","):
                out.add(Path("/sys/fs/cgroup") / controller / path.lstrip("/"))
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            out.add(Path("/sys/fs/cgroup") / path.lstrip("/"))
    return {g for g in out if g.parent.name.startswith("aquatope-")}


def _crash_a_gateway(home: Path, handler: Path) -> set[Path]:
    """Start a gateway, run one replica, SIGKILL the gateway; return the owner groups left."""
    gateway = start_gateway(state_dir=home)
    with OpenFaaSPlatform(gateway.url, password=ensure_password(home)) as platform:
        platform.deploy(FunctionSpec(name="echo", handler=str(handler)))
        replica = platform.invoke("echo", b"").json()["pid"]
    owners = {g.parent for g in _groups_of(replica)}
    assert owners and all(o.name == f"aquatope-{gateway.pid}" for o in owners)
    os.kill(gateway.pid, signal.SIGKILL)
    gateway.proc.wait()
    wait_until(lambda: not Path(f"/proc/{replica}").exists(), timeout_s=10)
    assert all(o.exists() for o in owners)  # the leak: nobody removed them
    return owners


def test_next_gateway_start_removes_groups_of_a_killed_gateway(tmp_path, handler_dirs) -> None:
    owners = _crash_a_gateway(tmp_path, handler_dirs["echo"])
    gateway = start_gateway(state_dir=tmp_path)
    try:
        assert not any(o.exists() for o in owners)
    finally:
        gateway.close()


def test_down_removes_groups_of_a_killed_gateway(tmp_path, handler_dirs) -> None:
    owners = _crash_a_gateway(tmp_path, handler_dirs["echo"])
    assert remove_stale_groups({o.parent for o in owners}) >= 1
    assert not any(o.exists() for o in owners)


def test_groups_of_a_live_gateway_are_left_alone(tmp_path) -> None:
    parent = tmp_path / "cgroups"
    live = parent / f"aquatope-{os.getpid()}" / "replica"
    live.mkdir(parents=True)
    other = parent / "aquatope-probe"
    other.mkdir()
    assert remove_stale_groups({parent}) == 0
    assert live.exists() and other.exists()
