"""OpenFaaS CE end to end through the CLI: `aquatope up --platform openfaas` starts the real
OpenFaaS gateway, Prometheus and AlertManager in front of our provider; the functions scale from
zero through it, the CE alert autoscaler scales one up under a load step, limits change live,
and `aquatope down` leaves no process, container or port behind.

Needs Docker, root, Go 1.19, prometheus and prometheus-alertmanager (``.ci/run`` installs them
through ``scripts/ensure-system-deps.sh``) and the gateway source archive.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.errors import BackendUnavailable
from testbed.openfaas_ce.source import find_source
from testbed.openfaas_ce.stack import CONTAINER_PREFIX, STATE_FILE
from tests.helpers import wait_until

pytestmark = [pytest.mark.openfaas, pytest.mark.docker, pytest.mark.slow]

LOAD_LIMIT_S = 90.0  # the load step stops by itself after this, scaled up or not


def _aquatope(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def stack_home(
    tmp_path_factory: pytest.TempPathFactory, handler_dirs: dict[str, Path]
) -> Iterator[Path]:
    try:
        find_source()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    home = tmp_path_factory.mktemp("openfaas-home")
    stack = home / "stack.yml"
    stack.write_text(
        "version: 1.0\n"
        "provider: {name: openfaas, gateway: http://127.0.0.1:8080}\n"
        "functions:\n"
        f"  busy:\n    lang: python3-http\n    handler: {handler_dirs['echo']}\n"
        "    environment: {max_inflight: 4}\n"
        "    labels: {com.openfaas.scale.min: '1', com.openfaas.scale.max: '4',"
        " com.openfaas.scale.factor: '50'}\n"
        f"  sleepy:\n    lang: python3-http\n    handler: {handler_dirs['echo']}\n"
        "    labels: {com.openfaas.scale.min: '0', com.openfaas.scale.max: '2'}\n"
        f"  idle:\n    lang: python3-http\n    handler: {handler_dirs['echo']}\n"
        "    labels: {com.openfaas.scale.min: '0', com.openfaas.scale.max: '2'}\n"
    )
    up = _aquatope("up", "--platform", "openfaas", "--port", "0", "--stack", str(stack), home=home)
    assert up.returncode == 0, up.stderr + up.stdout
    assert "deployed 3 functions" in up.stdout
    yield home
    _aquatope("down", home=home)


@pytest.fixture(scope="module")
def client(stack_home: Path) -> Iterator[OpenFaaSPlatform]:
    info = json.loads((stack_home / "gateway.json").read_text())
    password = (stack_home / "basic-auth-password").read_text().strip()
    with OpenFaaSPlatform(info["url"], password=password, metrics_url=info["metrics_url"]) as p:
        yield p


def test_the_gateway_is_real_openfaas_on_loopback(
    stack_home: Path, client: OpenFaaSPlatform
) -> None:
    info = json.loads((stack_home / "gateway.json").read_text())
    assert urlsplit(info["url"]).hostname == "127.0.0.1"
    with httpx.Client(base_url=info["url"], timeout=10) as anon:
        assert anon.get("/system/functions").status_code == 401  # basic auth, as in OpenFaaS
        password = (stack_home / "basic-auth-password").read_text().strip()
        system = anon.get("/system/info", auth=("admin", password)).json()
        assert system["provider"]["provider"] == "aquatope-testbed"  # ours, behind theirs
        assert "version" in system and "arch" in system  # the OpenFaaS gateway's own fields
        ui = anon.get("/ui/", auth=("admin", password))
        assert ui.status_code == 200 and "OpenFaaS" in ui.text
    listed = {s.name: s for s in client.list()}
    assert set(listed) == {"busy", "sleepy", "idle"}


def test_scale_from_zero_through_the_gateway(stack_home: Path) -> None:
    status = json.loads(_aquatope("status", "sleepy", "--json", home=stack_home).stdout)
    assert status[0]["ready"] == 0
    result = _aquatope("invoke", "sleepy", "-d", "wake", "-v", home=stack_home)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"] == "wake"
    assert "cold start: true" in result.stderr
    again = _aquatope("invoke", "sleepy", "-d", "again", "-v", home=stack_home)
    assert "cold start: false" in again.stderr


def test_alertmanager_scales_up_under_a_load_step(client: OpenFaaSPlatform) -> None:
    """No daemon runs: only the CE alert path (Prometheus -> AlertManager -> /system/alert)
    can raise the replicas. scale.max 4 x factor 50 % = one step of 2: 1 -> 3."""
    wait_until(lambda: client.status("busy").replicas_ready == 1, timeout_s=30)
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        with httpx.Client(base_url=client.url, timeout=30) as http:
            while not stop.is_set():
                http.post("/function/busy", content=b"x")
                sent[0] += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + LOAD_LIMIT_S
        target = 1
        while time.monotonic() < deadline and target < 3:
            time.sleep(0.5)
            target = client.status("busy").target_replicas
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert sent[0] > 100
    assert target == 3, f"no alert-driven scale-up after {sent[0]} requests"
    wait_until(lambda: client.status("busy").replicas_ready == 3, timeout_s=30)


def test_limits_change_live_through_put(stack_home: Path, client: OpenFaaSPlatform) -> None:
    before = {r.id for r in client.status("busy").replicas if r.state == "ready"}
    out = _aquatope("limits", "busy", "--cpu", "0.5", "--memory", "192M", home=stack_home)
    assert out.returncode == 0, out.stderr
    status = client.status("busy")
    assert (status.limits.cpu_cores, status.limits.memory_mb) == (0.5, 192)
    after = {r.id for r in status.replicas if r.state == "ready"}
    assert before and before <= after  # same replicas: applied live, nothing restarted
    assert client.invoke("busy", b"after").ok


def test_connect_openfaas_finds_the_recorded_stack(
    stack_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backend: openfaas` with no options: the workflow front's URL, the password and the
    metrics port from `up`."""
    from testbed.backends import connect

    monkeypatch.setenv("AQUATOPE_HOME", str(stack_home))
    monkeypatch.delenv("OPENFAAS_PASSWORD", raising=False)
    info = json.loads((stack_home / "gateway.json").read_text())
    with connect("openfaas") as platform:
        assert isinstance(platform, OpenFaaSPlatform)
        assert (platform.url, platform.metrics_url) == (info["workflow_url"], info["metrics_url"])
        platform.invoke("busy", b"counted")
        assert platform.metrics().functions["busy"].completed >= 1


def test_the_daemon_drives_the_stack(stack_home: Path, client: OpenFaaSPlatform) -> None:
    """`openfaas-ce` only observes (the idle function stays at zero); `always-on` keeps one
    replica of every function, scaling through the real gateway's /system/scale-function."""
    decisions = stack_home / "decisions.jsonl"
    observe = _aquatope(
        "scheduler", "run", "--policy", "openfaas-ce", "--duration", "3", "--decisions",
        str(decisions), "-q", home=stack_home,
    )  # fmt: skip
    assert observe.returncode == 0, observe.stderr
    ticks = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert len(ticks) >= 2
    assert client.status("idle").target_replicas == 0
    act = _aquatope(
        "scheduler", "run", "--policy", "always-on", "--duration", "3", "-q", home=stack_home
    )  # fmt: skip
    assert act.returncode == 0, act.stderr
    assert client.status("idle").target_replicas == 1
    wait_until(lambda: client.status("idle").replicas_ready == 1, timeout_s=30)


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((parts.hostname or "", parts.port or 0)) == 0


def test_down_leaves_nothing_behind(stack_home: Path) -> None:
    from testbed.gateway.runtimes.images.engine import connect_engine
    from testbed.openfaas_ce.stack import _alive

    record = json.loads((stack_home / STATE_FILE).read_text())
    replicas = json.loads((stack_home / "local-replicas.json").read_text())
    replica_pids = [int(r["pid"]) for r in replicas.values()]
    assert len(replica_pids) >= 5  # busy x3 (scaled up), sleepy x1, idle x1
    down = _aquatope("down", home=stack_home)
    assert down.returncode == 0, down.stderr
    assert not (stack_home / STATE_FILE).exists()
    assert not (stack_home / "gateway.json").exists()
    assert not any(_alive(pid) for pid in [*record["pids"].values(), *replica_pids])
    client = connect_engine()
    try:
        names = [c.name for c in client.containers.list(all=True)]
    finally:
        client.close()
    assert record["container"] not in names
    assert not [n for n in names if n.startswith(CONTAINER_PREFIX) and str(stack_home) in n]
    assert set(record["pids"]) == {"provider", "prometheus", "alertmanager", "front"}
    for url in (record["url"], record["metrics_url"], record["workflow_url"]):
        assert not _port_open(url), url
