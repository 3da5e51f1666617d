"""Start and stop the OpenFaaS CE control plane: the real gateway, Prometheus, AlertManager and
our provider, all in one private network namespace with only the gateway published on 127.0.0.1.

Layout (one "pod", like the gateway's pod in Kubernetes):

* the OpenFaaS gateway runs in a container (image from :mod:`testbed.openfaas_ce.source`),
  which owns the network namespace; its API (8080) and metrics (8082) ports are published on
  ``127.0.0.1`` only. Inside the namespace it binds every interface, as its code does;
* our provider (``python -m testbed.gateway --provider``, replicas as local processes),
  Prometheus and AlertManager run as host processes entered into that namespace with
  ``nsenter --net`` (needs root), each bound to ``127.0.0.1`` there, so nothing but the
  published gateway ports can be reached from the host, and nothing at all from the network.

``$AQUATOPE_HOME/openfaas-ce.json`` records the container and every pid; :func:`stop_stack`
reads it and removes all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from testbed.core.atomic import atomic_write_json, atomic_write_text
from testbed.core.errors import BackendUnavailable, ConfigError
from testbed.openfaas_ce.monitoring import (
    AlertRules,
    write_alertmanager_config,
    write_prometheus_config,
)
from testbed.openfaas_ce.source import LABEL_STACK, gateway_image

__all__ = [
    "STATE_FILE",
    "OpenFaaSStack",
    "StackOptions",
    "running_stack",
    "start_stack",
    "stop_stack",
]

STATE_FILE = "openfaas-ce.json"
CONTAINER_PREFIX = "aquatope-of-gateway-"
PROVIDER_PORT = 8081  # inside the stack's namespace
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
SECRETS_IN_CONTAINER = "/var/openfaas/secrets"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
_BINARIES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


@dataclass(frozen=True, kw_only=True)
class StackOptions:
    """How to start the stack.

    Args:
        home: state directory (password, logs, configs); ``$AQUATOPE_HOME`` by default.
        port: host port of the gateway API on 127.0.0.1 (0: any free port).
        backend: our provider's replica runtime: ``local`` processes or ``docker`` containers
            (the gateway container then joins the replicas' network, so the provider in its
            namespace reaches them).
        rules: alert and scrape timing.
        timeout_s: gateway read/write/upstream timeout.
        cold_start_timeout_s: our provider's cold start limit.
        workflows_dir: workflows the front serves (default: the shipped ones).
        image: the gateway image: a reference, ``local`` (built from the source archive) or
            ``auto`` (the official image when a registry gives it, else ``local``); default
            ``$OPENFAAS_GATEWAY_IMAGE``, else ``auto`` (see
            :func:`~testbed.openfaas_ce.source.gateway_image`).
    """

    home: Path
    port: int = 0
    backend: str = "local"
    rules: AlertRules = field(default_factory=AlertRules)
    timeout_s: float = 125.0
    cold_start_timeout_s: float = 60.0
    workflows_dir: Path | None = None
    image: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if self.backend not in ("local", "docker"):
            raise ConfigError(f"backend must be 'local' or 'docker', got {self.backend!r}")


@dataclass(frozen=True)
class OpenFaaSStack:
    """A running stack, as recorded in ``openfaas-ce.json``.

    Args:
        url: the OpenFaaS gateway on the host's loopback.
        metrics_url: its Prometheus metrics port on the host's loopback.
        container: the gateway container's name.
        pids: host pids of ``provider``, ``prometheus``, ``alertmanager`` and ``front``.
        workflow_url: our workflow front (``/workflow/{name}`` with every stage through the
            OpenFaaS gateway; other paths passed to it), on the host's loopback.
        image: the gateway image the container runs, and where it came from.
    """

    url: str
    metrics_url: str
    container: str
    pids: dict[str, int]
    home: Path
    workflow_url: str = ""
    image: str = ""
    image_origin: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "metrics_url": self.metrics_url,
            "container": self.container,
            "pids": dict(self.pids),
            "home": str(self.home),
            "workflow_url": self.workflow_url,
            "image": self.image,
            "image_origin": self.image_origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpenFaaSStack:
        return cls(
            url=str(data["url"]),
            metrics_url=str(data["metrics_url"]),
            container=str(data["container"]),
            pids={str(k): int(v) for k, v in dict(data["pids"]).items()},
            home=Path(data["home"]),
            workflow_url=str(data.get("workflow_url") or ""),
            image=str(data.get("image") or ""),
            image_origin=str(data.get("image_origin") or ""),
        )

    def __enter__(self) -> OpenFaaSStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything (idempotent)."""
        stop_stack(self.home)


_PACKAGES = {"nsenter": "util-linux"}  # Debian package of a tool, when not its own name


def _which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackendUnavailable(
            f"{name} not found; install it: apt-get install -y {_PACKAGES.get(name, name)} "
            "(or run scripts/ensure-system-deps.sh as root)"
        )
    return path


def _write_secrets(directory: Path, password: str) -> None:
    """OpenFaaS reads the bare user and password (no newline).

    The official image runs the gateway as an unprivileged user, so the mounted directory and
    files are readable by any user; its parent is 0700, so on the host only root reaches them.
    """
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.parent.chmod(0o700)
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)
    atomic_write_text(directory / "basic-auth-user", "admin", mode=0o644)
    atomic_write_text(directory / "basic-auth-password", password, mode=0o644)


def _start_process(cmd: list[str], log_path: Path, netns: str) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            ["nsenter", f"--net={netns}", "--", *cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_ready(url: str, auth: tuple[str, str], procs: dict[str, int], logs: Path) -> None:
    """Until the gateway lists functions: that needs the provider and Prometheus both up."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        for name, pid in procs.items():
            if not _alive(pid):
                raise BackendUnavailable(
                    f"openfaas stack: {name} exited at start; see {logs / (name + '.log')}"
                )
        try:
            r = httpx.get(f"{url}/system/functions", auth=auth, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text.strip()[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise BackendUnavailable(f"openfaas gateway at {url} not ready in {START_TIMEOUT_S:g}s: {last}")


def _start_front(upstream: str, workflows_dir: Path | None, log_path: Path) -> tuple[int, str]:
    """Start the workflow front on the host's loopback; returns (pid, url)."""
    import selectors
    import sys

    cmd = [sys.executable, "-m", "testbed.openfaas_ce.front", "--upstream", upstream]
    if workflows_dir is not None:
        cmd += ["--workflows-dir", str(workflows_dir)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    assert proc.stdout is not None
    line = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if sel.select(timeout=START_TIMEOUT_S):
            line = proc.stdout.readline()
    proc.stdout.close()
    try:
        url = str(json.loads(line)["url"])
    except (ValueError, KeyError, TypeError):
        proc.kill()
        proc.wait()
        raise BackendUnavailable(
            f"openfaas stack: the workflow front did not start; see {log_path}"
        ) from None
    return proc.pid, url


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_stack(options: StackOptions) -> OpenFaaSStack:
    """Build what is missing and start the whole stack; returns once the gateway answers.

    Raises:
        BackendUnavailable: a missing tool (Go, Prometheus, AlertManager, nsenter, Docker,
            root) or a part that did not start; everything started so far is stopped again.
        ConfigError: a stack is already recorded in ``options.home``.
    """
    from testbed.gateway.auth import ADMIN_USER, ensure_password
    from testbed.gateway.launch import start_gateway
    from testbed.gateway.runtimes.images.engine import connect_engine, engine_errors

    home = options.home
    if (home / STATE_FILE).exists():
        raise ConfigError(
            f"an OpenFaaS stack is recorded in {home / STATE_FILE}; `aquatope down` first"
        )
    if os.geteuid() != 0:
        raise BackendUnavailable("the OpenFaaS stack needs root (nsenter into its namespace)")
    tools = {name: _which(binary) for name, binary in _BINARIES.items()}
    _which("nsenter")
    image = gateway_image(options.image)
    password = ensure_password(home)
    of_dir = home / "openfaas-ce"
    logs = home / "logs"
    secrets = of_dir / "secrets"
    _write_secrets(secrets, password)
    name = CONTAINER_PREFIX + os.urandom(4).hex()
    timeout = f"{options.timeout_s:g}s"
    env = {
        "functions_provider_url": f"http://127.0.0.1:{PROVIDER_PORT}/",
        "faas_prometheus_host": "127.0.0.1",
        "faas_prometheus_port": str(PROMETHEUS_PORT),
        "basic_auth": "true",
        "secret_mount_path": SECRETS_IN_CONTAINER,
        "scale_from_zero": "true",
        "direct_functions": "false",
        "read_timeout": timeout,
        "write_timeout": timeout,
        "upstream_timeout": f"{max(1.0, options.timeout_s - 5):g}s",
    }
    client = connect_engine()
    stack = OpenFaaSStack(
        url="",
        metrics_url="",
        container=name,
        pids={},
        home=home,
        image=image.ref,
        image_origin=image.origin,
    )
    atomic_write_json(home / STATE_FILE, stack.to_json())
    try:
        network = _replica_network(client, home) if options.backend == "docker" else None
        with engine_errors("starting the OpenFaaS gateway container"):
            container = client.containers.run(
                image.ref,
                name=name,
                detach=True,
                environment=env,
                labels={LABEL_STACK: str(home)},
                ports={
                    "8080/tcp": ("127.0.0.1", options.port or None),
                    "8082/tcp": ("127.0.0.1", None),
                },
                volumes={str(secrets): {"bind": SECRETS_IN_CONTAINER, "mode": "ro"}},
                network=network,
            )
            container.reload()
            netns = f"/proc/{int(container.attrs['State']['Pid'])}/ns/net"
            published = container.attrs["NetworkSettings"]["Ports"]
            api_port = int(published["8080/tcp"][0]["HostPort"])
            metrics_port = int(published["8082/tcp"][0]["HostPort"])
        url = f"http://127.0.0.1:{api_port}"
        stack = replace(stack, url=url, metrics_url=f"http://127.0.0.1:{metrics_port}")
        atomic_write_json(home / STATE_FILE, stack.to_json())
        provider = start_gateway(
            backend=options.backend,
            host="127.0.0.1",
            port=PROVIDER_PORT,
            state_dir=home,
            detach=True,
            provider=True,
            cold_start_timeout_s=options.cold_start_timeout_s,
            command_prefix=["nsenter", f"--net={netns}", "--"],
        )
        stack.pids["provider"] = provider.pid
        atomic_write_json(home / STATE_FILE, stack.to_json())
        prom_yml = write_prometheus_config(
            of_dir / "prometheus",
            rules=options.rules,
            metrics_target="127.0.0.1:8082",
            alertmanager_target=f"127.0.0.1:{ALERTMANAGER_PORT}",
        )
        prometheus = _start_process(
            [
                tools["prometheus"],
                f"--config.file={prom_yml}",
                f"--storage.tsdb.path={of_dir / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            ],
            logs / "prometheus.log",
            netns,
        )
        stack.pids["prometheus"] = prometheus.pid
        atomic_write_json(home / STATE_FILE, stack.to_json())
        am_yml = write_alertmanager_config(
            of_dir / "alertmanager",
            rules=options.rules,
            alert_url="http://127.0.0.1:8080/system/alert",
            username=ADMIN_USER,
            password_file=secrets / "basic-auth-password",
        )
        alertmanager = _start_process(
            [
                tools["alertmanager"],
                f"--config.file={am_yml}",
                f"--storage.path={of_dir / 'alertmanager' / 'data'}",
                f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
                "--cluster.listen-address=",
            ],
            logs / "alertmanager.log",
            netns,
        )
        stack.pids["alertmanager"] = alertmanager.pid
        atomic_write_json(home / STATE_FILE, stack.to_json())
        _wait_ready(url, (ADMIN_USER, password), stack.pids, logs)
        front_pid, front_url = _start_front(url, options.workflows_dir, logs / "front.log")
        stack.pids["front"] = front_pid
        stack = replace(stack, workflow_url=front_url)
        atomic_write_json(home / STATE_FILE, stack.to_json())
    except BaseException:
        stop_stack(home)
        raise
    finally:
        client.close()
    return stack


def _replica_network(client: Any, home: Path) -> str:
    """The docker runtime's network for a provider on ``home``, created here (with the
    runtime's labels, so ``remove_all`` removes it) for the gateway container to join."""
    import docker.errors

    from testbed.gateway.runtimes.docker import gateway_id_for
    from testbed.gateway.runtimes.images.engine import (
        LABEL_GATEWAY,
        LABEL_MANAGED,
        LABEL_ROLE,
        engine_errors,
    )

    gid = gateway_id_for(home)
    name = f"aquatope-{gid}"
    with engine_errors("creating the replicas' network"):
        try:
            client.networks.get(name)
        except docker.errors.NotFound:
            client.networks.create(
                name,
                driver="bridge",
                labels={LABEL_MANAGED: "1", LABEL_GATEWAY: gid, LABEL_ROLE: "network"},
            )
    return name


def running_stack(home: Path) -> OpenFaaSStack | None:
    """The stack recorded in ``home``, or ``None``."""
    try:
        return OpenFaaSStack.from_json(json.loads((home / STATE_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _ours(pid: int, needle: str) -> bool:
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _terminate(pids: dict[str, int], timeout_s: float) -> None:
    needles = {"provider": "testbed.gateway", "front": "testbed.openfaas_ce.front", **_BINARIES}
    live = [p for n, p in pids.items() if _alive(p) and _ours(p, needles.get(n, n))]
    for pid in live:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in live) and time.monotonic() < deadline:
        _reap(live)
        time.sleep(0.05)
    for pid in live:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    _reap(live)


def _reap(pids: list[int]) -> None:
    """Collect those of ``pids`` that are exited children of this process."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def stop_stack(home: Path, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the stack recorded in ``home``: processes first (replicas go with the provider),
    then the container; the record is removed. Returns whether a stack was recorded."""
    stack = running_stack(home)
    if stack is None:
        (home / STATE_FILE).unlink(missing_ok=True)
        return False
    _terminate(stack.pids, timeout_s)
    from testbed.gateway.runtimes.images.engine import connect_engine, engine_errors

    client = connect_engine()
    try:
        with engine_errors("removing the OpenFaaS gateway container"):
            import docker.errors

            found = client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={home}"})
            for container in found:
                if container.name.startswith(CONTAINER_PREFIX):
                    with contextlib.suppress(docker.errors.NotFound):
                        container.remove(force=True)
    finally:
        client.close()
    from testbed.gateway.runtimes.docker import remove_all

    remove_all(home)  # docker replicas and their network, when the provider used them
    (home / STATE_FILE).unlink(missing_ok=True)
    return True
