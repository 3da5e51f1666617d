"""Soak with faults: open-loop load on both workflows while replicas, daemon and gateway die.

Runs a gateway (``--backend local`` or ``docker``) on loopback with the stack deployed and a
scheduler daemon acting (``--policy``: the OpenFaaS CE default ``always-on``, or
``keep-alive`` with a 30 s window), replays a steady trace on ml-pipeline and the social
network in a child process, and injects, on a fixed schedule:

* every ``--kill-every-s``: SIGKILL of one replica process (local) or container (docker);
* once: an OOM kill (a 40 MiB ``noop`` replica asked to echo a 30 MB body, under the
  gateway's default 32 MiB body cap);
* once: the scheduler daemon stopped and a new one resumed from its state file;
* once: the gateway SIGKILLed and restarted on the same port and state directory (it
  re-adopts its replicas);
* once: a code-changing update (``PUT /system/functions`` with a new environment).

It prints one JSON line: requests scheduled, sent, answered by status, **lost** (scheduled
but no outcome recorded; goal 0), 5xx **not attributable** to an injected fault (outside
every fault's window; goal 0), the seconds until a request to the affected target succeeded
again after each fault, and the gateway's RSS growth (goal < 10 %) from just after the OOM
fault (the largest body it ever holds) to just before its restart.

Traffic goes only to 127.0.0.1; every loop is bounded by ``--duration-s``.

Keep-alive starts a replica for every queued request (the policy as specified, once the
gateway stopped hiding its queue). With 1.7 s torch starts on 2 cores that storms the host:
121 of 150 requests of a 30 s run timed out before any fault. The soak measures the request
path, so it runs the platform default unless asked.

The state directory (requests, stages, the gateway's log) is removed after a soak that
passed and kept, its path printed, after one that failed or with ``--keep-dir``.

Usage: ``.venv/bin/python bench/soak.py [--duration-s 600] [--backend local|docker]
[--policy always-on|keep-alive] [--keep-dir]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loadgen import ReplayOptions, replay_in_child  # noqa: E402
from loadgen.plan import plan  # noqa: E402
from loadgen.trace import Trace  # noqa: E402
from scheduler.clock import WallClock  # noqa: E402
from scheduler.daemon import Daemon  # noqa: E402
from scheduler.registry import create_policy  # noqa: E402
from testbed.backends.openfaas import OpenFaaSPlatform  # noqa: E402
from testbed.core.config import Limits  # noqa: E402
from testbed.core.errors import TestbedError  # noqa: E402
from testbed.core.stack import load_stack  # noqa: E402
from testbed.core.workflows import load_workflows  # noqa: E402
from testbed.gateway.auth import ensure_password  # noqa: E402
from testbed.gateway.launch import GatewayProcess, start_gateway  # noqa: E402
from testbed.gateway.runtimes.images.engine import (  # noqa: E402
    LABEL_FUNCTION,
    LABEL_GATEWAY,
    LABEL_ROLE,
)

WORKFLOWS = ("ml-pipeline", "social-network")
FAULT_WINDOW_S = 30.0  # a 5xx this soon after a fault's start is the fault's


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    recovered_s: float | None = None
    detail: str = ""


@dataclass
class Soak:
    """The running system under test and what was done to it."""

    backend: str
    home: Path
    port: int
    gateway: GatewayProcess
    platform: OpenFaaSPlatform
    t0: float
    traffic_functions: frozenset[str] = frozenset()  # replica kills pick among these only
    faults: list[Fault] = field(default_factory=list)
    policy: str = "always-on"
    daemon_stop: threading.Event = field(default_factory=threading.Event)
    daemon_thread: threading.Thread | None = None

    def now_s(self) -> float:
        return time.time() - self.t0

    def start_daemon(self) -> None:
        catalog = load_workflows()
        workflows = {n: catalog.get(n) for w in WORKFLOWS for n in catalog.resolve(w).weights}
        params = {"window_s": 30.0} if self.policy == "keep-alive" else {}
        daemon = Daemon(
            self.platform,
            create_policy(self.policy, params),
            clock=WallClock(),
            tick_s=1.0,
            workflows=workflows,
            state_path=self.home / "daemon-state.json",
            policy_name=self.policy,
        )
        self.daemon_stop = threading.Event()
        self.daemon_thread = threading.Thread(
            target=daemon.run, args=(self.daemon_stop,), daemon=True
        )
        self.daemon_thread.start()

    def stop_daemon(self) -> None:
        self.daemon_stop.set()
        if self.daemon_thread is not None:
            self.daemon_thread.join(timeout=30)


def _replica_processes(soak: Soak) -> list[psutil.Process]:
    """Replica processes (local) of the current gateway."""
    try:
        gateway = psutil.Process(soak.gateway.pid)
        return [
            p for p in gateway.children(recursive=True) if "testbed.runner" in " ".join(p.cmdline())
        ]
    except psutil.Error:
        return []


def _function_of(process: psutil.Process) -> str:
    try:
        cmd = process.cmdline()
    except psutil.Error:
        return "?"
    return cmd[cmd.index("--function") + 1] if "--function" in cmd else "?"


def _kill_replica(soak: Soak, rng: random.Random) -> Fault | None:
    if soak.backend == "docker":
        import docker

        client = docker.from_env()
        from testbed.gateway.runtimes.docker import gateway_id_for

        ours = f"{LABEL_GATEWAY}={gateway_id_for(soak.home)}"
        containers = [
            c
            for c in client.containers.list(filters={"label": [f"{LABEL_ROLE}=replica", ours]})
            if c.labels.get(LABEL_FUNCTION) in soak.traffic_functions
        ]
        if not containers:
            return None
        victim = rng.choice(containers)
        name = victim.labels.get(LABEL_FUNCTION, "?")
        victim.kill()
        return Fault("replica-kill", name, soak.now_s(), detail=victim.short_id)
    procs = [p for p in _replica_processes(soak) if _function_of(p) in soak.traffic_functions]
    if not procs:
        return None
    victim = rng.choice(procs)
    name = _function_of(victim)
    try:
        victim.send_signal(signal.SIGKILL)
    except psutil.Error:
        return None
    return Fault("replica-kill", name, soak.now_s(), detail=str(victim.pid))


def _oom_kill(soak: Soak) -> Fault:
    fault = Fault("oom-kill", "noop", soak.now_s())
    try:
        soak.platform.set_limits("noop", Limits(cpu_cores=0.5, memory_mb=40))
        result = soak.platform.invoke("noop", b"x" * (30 * 2**20), timeout_s=60)
        fault.detail = f"status {result.status_code}"
    except TestbedError as exc:
        fault.detail = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        try:
            soak.platform.set_limits("noop", Limits(cpu_cores=0.5, memory_mb=128))
        except TestbedError as exc:
            fault.detail += f"; restore failed: {exc}"[:200]
    return fault


def _restart_gateway(soak: Soak) -> Fault:
    fault = Fault("gateway-kill", "*", soak.now_s())
    os.kill(soak.gateway.pid, signal.SIGKILL)
    soak.gateway.proc.wait(timeout=30)
    soak.gateway = start_gateway(backend=soak.backend, port=soak.port, state_dir=soak.home)
    fault.detail = f"restarted as pid {soak.gateway.pid}"
    return fault


def _update_code(soak: Soak, spec: Any) -> Fault:
    fault = Fault("code-update", spec.name, soak.now_s())
    from dataclasses import replace

    soak.platform.deploy(replace(spec, env={**spec.env, "SOAK_VERSION": str(time.time())}))
    return fault


def _restart_daemon(soak: Soak) -> Fault:
    fault = Fault("daemon-restart", "*", soak.now_s())
    soak.stop_daemon()
    soak.start_daemon()
    return fault


def _trace(duration_s: float, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    rates = {"ml-pipeline": 1.0, "social-network": 4.0}  # requests per second
    arrivals = {
        name: np.sort(rng.uniform(0, duration_s, int(rate * duration_s)))
        for name, rate in rates.items()
    }
    return Trace(arrivals, duration_s, source="soak")


def _read_requests(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _recovery(
    rows: list[dict[str, str]], fault: Fault, stages_by_request: dict[str, set[str]]
) -> float | None:
    """Seconds from the fault until a request touching its target succeeded."""
    for row in sorted(rows, key=lambda r: float(r["sent_s"] or "inf")):
        sent = float(row["sent_s"] or "nan")
        if not sent > fault.at_s or not 200 <= int(row["status"]) < 300:
            continue
        touched = stages_by_request.get(row["request_id"], set()) | {row["workflow"]}
        if fault.target == "*" or fault.target in touched:
            return round(float(row["end_s"]) - fault.at_s, 3)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument("--kill-every-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--policy", choices=("always-on", "keep-alive"), default="always-on", help="scheduler"
    )
    parser.add_argument(
        "--keep-dir",
        action="store_true",
        help="keep the temporary state directory (kept anyway when the soak fails)",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="aquatope-soak-"))
    ensure_password(home)
    gateway = start_gateway(backend=args.backend, state_dir=home)
    port = int(gateway.url.rsplit(":", 1)[1])
    platform = OpenFaaSPlatform(gateway.url, password=ensure_password(home))
    stack = load_stack(REPO / "stack.yml")
    catalog = load_workflows()
    names = {
        f for w in WORKFLOWS for n in catalog.resolve(w).weights for f in catalog.get(n).functions
    }
    for name in sorted(names | {"noop"}):
        platform.deploy(stack[name])
    for name in sorted(names):
        platform.scale(name, replicas=1)  # replicas start while the replay child starts
    # only functions that take traffic: recovery of a replica nobody calls cannot be seen
    # (noop is touched by the OOM fault alone)
    soak = Soak(
        args.backend,
        home,
        port,
        gateway,
        platform,
        t0=0.0,
        traffic_functions=frozenset(names),
        policy=args.policy,
    )
    out = home / "run"
    the_plan = plan(_trace(args.duration_s, args.seed), list(WORKFLOWS), seed=args.seed)
    result: dict[str, Any] = {}

    def run_load() -> None:
        result["replay"] = replay_in_child(
            the_plan,
            gateway.url,
            out,
            ReplayOptions(timeout_s=30, locust_csv=False, start_at_unix_s=soak.t0),
            wall_timeout_s=args.duration_s + 300,
        )

    soak.t0 = time.time() + 5.0
    soak.start_daemon()
    loader = threading.Thread(target=run_load, daemon=True)
    loader.start()
    while time.time() < soak.t0 + 10:  # steady state before measuring memory
        time.sleep(0.2)
    rss_start = psutil.Process(soak.gateway.pid).memory_info().rss
    schedule = {
        0.25: lambda: _oom_kill(soak),
        0.4: lambda: _restart_daemon(soak),
        0.55: lambda: _update_code(soak, stack["text-filter"]),
        0.7: lambda: _restart_gateway(soak),
    }
    next_kill = args.kill_every_s
    done_once: set[float] = set()
    rss_before_restart = rss_start
    while loader.is_alive() and soak.now_s() < args.duration_s:
        now = soak.now_s()
        if now >= next_kill:
            fault = _kill_replica(soak, rng)
            if fault:
                soak.faults.append(fault)
            next_kill += args.kill_every_s
        for share, action in schedule.items():
            if share not in done_once and now >= share * args.duration_s:
                done_once.add(share)
                if share == 0.7:
                    rss_before_restart = psutil.Process(soak.gateway.pid).memory_info().rss
                soak.faults.append(action())
                if share == 0.25:
                    # the OOM fault sends the largest body the gateway ever holds: measure
                    # growth from after it, so a leak is not confused with that one buffer
                    rss_start = psutil.Process(soak.gateway.pid).memory_info().rss
        time.sleep(0.2)
    rss_end = psutil.Process(soak.gateway.pid).memory_info().rss
    loader.join(timeout=args.duration_s + 300)
    soak.stop_daemon()
    platform.close()
    soak.gateway.close()

    rows = _read_requests(out / "requests.csv")
    stages: dict[str, set[str]] = {}
    if (out / "stages.csv").is_file():
        for stage in _read_requests(out / "stages.csv"):
            stages.setdefault(stage["request_id"], set()).add(stage["function"])
    by_status: dict[str, int] = {}
    unattributed = []
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        code = int(row["status"])
        if code >= 500 or code == 0:
            sent = float(row["sent_s"] or row["intended_s"])
            if not any(f.at_s - 1.0 <= sent <= f.at_s + FAULT_WINDOW_S for f in soak.faults):
                unattributed.append(
                    {k: row[k] for k in ("request_id", "workflow", "status", "error")}
                )
    for fault in soak.faults:
        fault.recovered_s = _recovery(rows, fault, stages)
    growth_gateway_1 = (rss_before_restart - rss_start) / rss_start
    report = {
        "bench": "soak",
        "backend": args.backend,
        "duration_s": args.duration_s,
        "scheduled": len(the_plan.schedule),
        "recorded": len(rows),
        "lost": len(the_plan.schedule) - len(rows),
        "by_status": dict(sorted(by_status.items())),
        "unattributed_5xx": len(unattributed),
        "unattributed_examples": unattributed[:5],
        "faults": [
            {
                "kind": f.kind,
                "target": f.target,
                "at_s": round(f.at_s, 2),
                "recovered_s": f.recovered_s,
                "detail": f.detail,
            }
            for f in soak.faults
        ],
        "gateway_rss_growth": round(growth_gateway_1, 4),
        "gateway_rss_mb": [
            round(rss_start / 2**20, 1),
            round(rss_before_restart / 2**20, 1),
            round(rss_end / 2**20, 1),
        ],
    }
    passed = report["lost"] == 0 and not unattributed
    keep = args.keep_dir or not passed
    report["state_dir"], report["state_dir_kept"] = str(home), keep
    if keep:  # its requests.csv, stages.csv and gateway log say what happened
        print(f"soak: state directory kept: {home}", file=sys.stderr)
    else:
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(report))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
