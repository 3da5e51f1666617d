"""Start and stop a gateway process (for ``connect("local"|"docker")`` and ``aquatope up``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from testbed.core.config import DEFAULT_HOST, aquatope_home
from testbed.core.errors import BackendUnavailable
from testbed.gateway._pdeathsig import die_with_parent

__all__ = ["GatewayProcess", "start_gateway"]

START_TIMEOUT_S = 60.0


class GatewayProcess:
    """A gateway running as a child (or detached) process. ``close()`` stops it and its replicas."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path
        self.pid = proc.pid

    def close(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, wait for a clean shutdown (replicas stopped), SIGKILL as a last resort."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _die_with_parent() -> None:
    """In the child before exec: a gateway owned by a process goes when that process goes."""
    die_with_parent(signal.SIGTERM)


def start_gateway(
    *,
    backend: str = "local",
    host: str = DEFAULT_HOST,
    port: int = 0,
    state_dir: Path | None = None,
    workflows_dir: Path | None = None,
    detach: bool = False,
    cold_start_timeout_s: float | None = None,
    provider: bool = False,
    command_prefix: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> GatewayProcess:
    """Launch ``python -m testbed.gateway`` and wait until it listens.

    Args:
        port: 0 lets the kernel pick a free port.
        detach: start a new session so the gateway outlives this process (``aquatope up``).
        provider: run as the faas-provider behind a real OpenFaaS gateway (``--provider``).
        command_prefix: run the command through this, e.g. ``nsenter --net=...``.
        extra_args: more ``python -m testbed.gateway`` flags (e.g. ``--max-body-mb 8``).

    Raises:
        BackendUnavailable: the gateway exited or did not announce itself in time.
    """
    state_dir = state_dir or aquatope_home()
    state_dir.mkdir(parents=True, exist_ok=True)
    role = "provider" if provider else "gateway"
    log_path = state_dir / "logs" / f"{role}-{backend}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        *command_prefix,
        sys.executable,
        "-m",
        "testbed.gateway",
        "--backend",
        backend,
        "--host",
        host,
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
    ]
    if workflows_dir is not None:
        cmd += ["--workflows-dir", str(workflows_dir)]
    if cold_start_timeout_s is not None:
        cmd += ["--cold-start-timeout", str(cold_start_timeout_s)]
    if provider:
        cmd.append("--provider")
    cmd += list(extra_args)
    env = dict(os.environ, PYTHONUNBUFFERED="1", AQUATOPE_HOME=str(state_dir))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_parent,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                break
            if proc.poll() is not None:
                break
    try:
        announced = json.loads(line) if line else {}
    except json.JSONDecodeError:
        announced = {}
    if announced.get("event") != "listening":
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise BackendUnavailable(
            f"gateway ({backend}) did not start: {' | '.join(tail) or 'no output'}"
        )
    proc.stdout.close()
    return GatewayProcess(proc, str(announced["url"]), log_path)
