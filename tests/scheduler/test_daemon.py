"""The daemon against the real local backend: scales as its policy says, logs, resumes, survives."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.clock import SimClock
from scheduler.daemon import Daemon
from scheduler.policies.always_on import AlwaysOnPolicy
from scheduler.policies.keepalive import KeepAlivePolicy
from testbed.backends import connect
from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.cli import cli
from testbed.core.errors import ConfigError
from testbed.core.platform import Platform
from tests.scheduler.live_helpers import deploy_noop, wait_for, write_noop


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Path, Path]]:
    """(platform, its state dir, a noop handler dir)."""
    root = tmp_path_factory.mktemp("daemon")
    home = root / "home"
    with connect("local", state_dir=home) as platform:
        yield platform, home, write_noop(root)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_keepalive_daemon_scales_to_zero_after_window(
    gateway: tuple[Platform, Path, Path], tmp_path: Path
) -> None:
    platform, _, handler = gateway
    deploy_noop(platform, "d-keep", handler)
    assert platform.invoke("d-keep", b"x").cold_start  # the gateway warms one on demand
    clock = SimClock(1000.0)
    log = tmp_path / "decisions.jsonl"
    daemon = Daemon(
        platform, KeepAlivePolicy(window_s=60), clock=clock, decisions_path=log, tick_s=1.0
    )
    daemon.tick()  # first tick: counters baseline; the replica present starts the window
    clock.advance(30)
    platform.invoke("d-keep", b"x")
    d = daemon.tick()  # sees the arrival: window restarts at t=1030
    assert d.functions["d-keep"].replicas == 1
    assert daemon.observer.state_dict()["counters"]["d-keep"]["started"] == 2
    clock.advance(59)
    assert daemon.tick().functions["d-keep"].replicas == 1
    assert platform.status("d-keep").replicas_ready == 1
    clock.advance(1)
    assert daemon.tick().functions["d-keep"].replicas == 0
    wait_for(lambda: platform.status("d-keep").replicas_ready == 0, what="scale to zero")
    lines = _lines(log)
    assert [round(x["t_s"]) for x in lines] == [0, 30, 89, 90]
    for line in lines:
        assert set(line) == {"t_s", "policy", "valid", "reason", "decide_s", "functions", "actions"}
        assert line["policy"] == "keep-alive" and line["valid"] and line["decide_s"] >= 0
    last = lines[-1]
    assert last["functions"]["d-keep"]["replicas"] == 0
    assert "window" in last["functions"]["d-keep"]["reason"]
    assert [(a["kind"], a["before"], a["after"], a["ok"]) for a in last["actions"]] == [
        ("scale", 1, 0, True)
    ]
    assert "d-keep" in lines[0]["functions"]  # the first line lists every function
    assert all("d-keep" not in x["functions"] for x in lines[1:3])  # only changes after that


def test_always_on_warms_and_state_resumes(
    gateway: tuple[Platform, Path, Path], tmp_path: Path
) -> None:
    platform, _, handler = gateway
    deploy_noop(platform, "d-on", handler)
    state = tmp_path / "state.json"
    clock = SimClock(50.0)
    first = Daemon(platform, AlwaysOnPolicy(), clock=clock, state_path=state, tick_s=1.0)
    stop = threading.Event()
    assert first.run(stop, until_s=55.0) == 6  # t = 50..55 on the sim clock
    wait_for(lambda: platform.status("d-on").replicas_ready == 1, what="one warm replica")
    saved = json.loads(state.read_text())
    assert saved["policy"] == "always-on" and saved["ticks"] == 6 and saved["t0_s"] == 50.0
    assert "d-on" in saved["policy_state"]["functions"]
    clock.advance(10)
    second = Daemon(platform, AlwaysOnPolicy(), clock=clock, state_path=state, tick_s=1.0)
    assert second.resumed and second.ticks == 6 and second.t0_s == 50.0
    second.tick()
    assert json.loads(state.read_text())["ticks"] == 7
    with pytest.raises(ConfigError, match="'policy'"):
        Daemon(platform, KeepAlivePolicy(), clock=clock, state_path=state)
    state.write_text("{not json")
    with pytest.raises(ConfigError, match=str(state)):
        Daemon(platform, AlwaysOnPolicy(), clock=clock, state_path=state)


def test_unreachable_platform_backs_off_and_never_raises(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket is closed
    platform = OpenFaaSPlatform(f"http://127.0.0.1:{port}", password="x", timeout_s=2)
    clock = SimClock(0.0)
    log = tmp_path / "decisions.jsonl"
    daemon = Daemon(
        platform, AlwaysOnPolicy(), clock=clock, tick_s=1.0, decisions_path=log, max_backoff_s=8
    )
    d = daemon.tick()
    assert not d.valid and "observe failed" in d.reason
    assert daemon.failures == 1
    daemon.run(threading.Event(), until_s=40.0)
    times = [line["t_s"] for line in _lines(log)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the manual tick and run()'s first one both fail at t=0, then waits of 2, 4, 8, 8 s
    assert gaps[:5] == [0.0, 2.0, 4.0, 8.0, 8.0]
    assert all(not line["valid"] for line in _lines(log))
    platform.close()


def _aquatope(home: Path, url: str, *args: str) -> list[str]:
    code = "from testbed.cli import main; main()"
    return [sys.executable, "-c", code, "--home", str(home), "--gateway", url, *args]


@pytest.mark.slow
def test_daemon_process_survives_sigkill_and_resumes(
    gateway: tuple[Platform, Path, Path], tmp_path: Path
) -> None:
    platform, home, handler = gateway
    deploy_noop(platform, "d-kill", handler)
    platform.invoke("d-kill", b"x")
    url = platform.url  # type: ignore[attr-defined]
    state, log = tmp_path / "state.json", tmp_path / "decisions.jsonl"
    argv = _aquatope(
        home, url, "scheduler", "run", "--policy", "keep-alive", "--param", "window_s=4",
        "--tick", "0.2", "--state", str(state), "--decisions", str(log), "-q",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:

        def saved() -> dict | None:
            try:
                data = json.loads(state.read_text())
            except (FileNotFoundError, ValueError):
                return None
            return data if data["ticks"] >= 3 else None

        before = wait_for(saved, what="state saved by the first daemon")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = json.loads(state.read_text())  # atomic writes: never a torn file
    last_used = killed["policy_state"]["last_use_s"]["d-kill"]  # per replica slot
    assert killed["ticks"] >= before["ticks"]

    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        resumed = wait_for(
            lambda: (s := saved()) and s["ticks"] > killed["ticks"] and s, what="resumed ticks"
        )
        assert resumed["t0_s"] == killed["t0_s"]  # same run clock: t_s keeps counting
        assert resumed["policy_state"]["last_use_s"]["d-kill"] == last_used
        # it keeps acting: the 4 s keep-alive since the invocation ends with zero replicas
        wait_for(lambda: platform.status("d-kill").replicas_ready == 0, what="scale to zero")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "resumed after" in err and "stopped after" in err
    lines = _lines(log)  # both runs appended whole lines
    assert any(a["kind"] == "scale" and a["after"] == 0 for x in lines for a in x["actions"])


def test_cli_list_and_bad_input(aquatope_home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["scheduler", "list"])
    assert out.exit_code == 0, out.output
    for name in ("always-on", "keep-alive", "keepalive-openwhisk", "knative-kpa"):
        assert name in out.output
    assert "hybrid-histogram" in out.output and "window_s" in out.output
    bad = runner.invoke(cli, ["scheduler", "run", "--policy", "nope"])
    assert bad.exit_code == 2 and "unknown policy" in bad.output
    bad = runner.invoke(cli, ["scheduler", "run", "--policy", "keep-alive", "--param", "x"])
    assert bad.exit_code == 2 and "k=v" in bad.output
    bad = runner.invoke(
        cli, ["scheduler", "run", "--policy", "keep-alive", "--param", "window_s=soon"]
    )
    assert bad.exit_code == 2 and "window_s" in bad.output


@pytest.mark.parametrize(
    ("policy_name", "replicas"),
    [
        ("always-on", 1),  # one replica per function, always
        ("keepalive-knative", 1),  # used at t=0, inside its keep-alive window
        ("knative-kpa", 0),  # no demand since it started watching and no grace: to zero
        ("hybrid-histogram", 1),  # too little history: falls back to keeping it warm
    ],
)
def test_every_baseline_drives_the_live_gateway(
    gateway: tuple[Platform, Path, Path], policy_name: str, replicas: int
) -> None:
    from scheduler.registry import create_policy

    platform, _, handler = gateway
    name = f"d-{policy_name}"[:40]
    deploy_noop(platform, name, handler)
    platform.invoke(name, b"x")
    clock = SimClock(0.0)
    daemon = Daemon(platform, create_policy(policy_name), clock=clock, policy_name=policy_name)
    for _ in range(5):
        decision = daemon.tick()
        assert decision.valid, decision.reason
        assert decision.functions[name].replicas == replicas, decision.functions[name].reason
        clock.advance(1.0)
    wait_for(
        lambda: platform.status(name).replicas_ready == replicas,
        what=f"{policy_name}: {replicas} ready replicas",
    )
    platform.remove(name)
