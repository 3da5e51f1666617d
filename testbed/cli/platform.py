"""Platform commands: up, down, status, deploy, remove, invoke, scale, limits, password, gateway."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from testbed.cli._app import App, pass_app
from testbed.cli.types import CPU, MEMORY
from testbed.core.atomic import atomic_write_json
from testbed.core.canary import DEFAULT_SHARE, canary_of, end_canary, set_canary
from testbed.core.config import DEFAULT_GATEWAY_PORT, DEFAULT_HOST, Limits
from testbed.core.errors import ConfigError, TestbedError
from testbed.core.platform import FunctionStatus, InvokeResult

__all__ = [
    "deploy",
    "down",
    "gateway",
    "invoke",
    "limits",
    "password",
    "remove",
    "scale",
    "status",
    "up",
]

DEFAULT_STACK = "stack.yml"


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into one-line CLI errors (exit code 1)."""
    try:
        yield
    except TestbedError as exc:
        raise click.ClickException(str(exc)) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return b"testbed.gateway" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _stack_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--stack",
        "stack_path",
        type=click.Path(dir_okay=False),
        default=DEFAULT_STACK,
        show_default=True,
        help="faas-cli stack file listing the functions.",
    )(func)


def _deploy_stack(app: App, stack_path: str, names: tuple[str, ...] = ()) -> list[str]:
    from testbed.core.stack import load_stack

    stack = load_stack(stack_path)
    wanted = [stack[n] for n in names] if names else list(stack)
    with app.platform() as platform:
        for spec in wanted:
            platform.deploy(spec)
    return [spec.name for spec in wanted]


@click.command()
@click.option(
    "--backend",
    type=click.Choice(["local", "docker"]),
    default="local",
    show_default=True,
    help="Run replicas as local processes or as Docker containers.",
)
@click.option(
    "--platform",
    "platform_name",
    type=click.Choice(["testbed", "openfaas"]),
    default="testbed",
    show_default=True,
    help="testbed: our gateway; openfaas: the real OpenFaaS gateway, Prometheus and "
    "AlertManager in front of our provider (Docker, root; see docs/openfaas.md).",
)
@_stack_option
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_GATEWAY_PORT,
    show_default=True,
    help="Gateway port (0: any free port).",
)
@click.option("--no-deploy", is_flag=True, help="Start the gateway without deploying the stack.")
@click.option(
    "--gateway-image",
    metavar="REF|local|auto",
    envvar="OPENFAAS_GATEWAY_IMAGE",
    default="auto",
    show_default=True,
    help="With --platform openfaas: the OpenFaaS gateway image (auto: the official image when "
    "a registry gives it, else built from the source archive; local: always built).",
)
@pass_app
def up(
    app: App,
    backend: str,
    platform_name: str,
    stack_path: str,
    host: str,
    port: int,
    no_deploy: bool,
    gateway_image: str,
) -> None:
    """Start the gateway in the background and deploy the stack."""
    from testbed.gateway.launch import start_gateway
    from testbed.gateway.runtimes.local import kill_recorded_replicas

    with _errors():
        if not no_deploy:
            from testbed.core.stack import load_stack

            load_stack(stack_path)  # fail before starting anything
        info = app.running_gateway()
        if info and _pid_alive(int(info["pid"])):
            raise click.ClickException(
                f"a gateway is already running at {info['url']} (pid {info['pid']}); "
                "`aquatope down` first"
            )
        leftovers = kill_recorded_replicas(app.home)
        if leftovers:
            click.echo(f"cleaned up {leftovers} replica process(es) left by an earlier crash")
        _remove_stale_cgroups()
        if platform_name == "openfaas":
            _up_openfaas(app, backend, stack_path, port, no_deploy, gateway_image)
            return
        if backend == "docker":
            from testbed.gateway.runtimes.docker import ensure_engine

            ensure_engine()
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(
                f"warning: binding {host}: the gateway will be reachable from the network", err=True
            )
        gateway = start_gateway(
            backend=backend, host=host, port=port, state_dir=app.home, detach=True
        )
        app.home.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            app.gateway_file, {"pid": gateway.pid, "url": gateway.url, "backend": backend}
        )
        app.gateway_url_option = gateway.url
        deployed = [] if no_deploy else _deploy_stack(app, stack_path)
    click.echo(f"gateway: {gateway.url} (backend {backend}, pid {gateway.pid})")
    if deployed:
        click.echo(f"deployed {len(deployed)} functions: {', '.join(deployed)}")
    click.echo(
        f"user: admin, password: `aquatope password` (stored in {app.home}/basic-auth-password)"
    )
    click.echo(f"logs: {gateway.log_path}")


def _up_openfaas(
    app: App, backend: str, stack_path: str, port: int, no_deploy: bool, image: str
) -> None:
    from testbed.openfaas_ce import StackOptions, start_stack

    stack = start_stack(StackOptions(home=app.home, port=port, backend=backend, image=image))
    atomic_write_json(
        app.gateway_file,
        {
            "pid": stack.pids["provider"],
            "url": stack.url,
            "backend": backend,
            "platform": "openfaas",
            "metrics_url": stack.metrics_url,
            "workflow_url": stack.workflow_url,
        },
    )
    app.gateway_url_option = stack.url
    deployed = [] if no_deploy else _deploy_stack(app, stack_path)
    click.echo(f"OpenFaaS gateway: {stack.url} (UI: {stack.url}/ui/, metrics: {stack.metrics_url})")
    click.echo(f"gateway image: {stack.image} ({stack.image_origin})")
    click.echo(f"workflows: {stack.workflow_url}/workflow/NAME (ours; stages via the gateway)")
    kind = "Docker containers" if backend == "docker" else "local processes"
    click.echo(f"provider: ours, replicas as {kind} (pid {stack.pids['provider']})")
    if deployed:
        click.echo(f"deployed {len(deployed)} functions: {', '.join(deployed)}")
    click.echo(
        f"user: admin, password: `aquatope password` (stored in {app.home}/basic-auth-password)"
    )
    click.echo(f"logs: {app.home / 'logs'}")


@click.command()
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for a clean shutdown before killing.",
)
@pass_app
def down(app: App, timeout_s: float) -> None:
    """Stop the gateway started by `aquatope up`, and every replica it started."""
    from testbed.gateway.runtimes.local import kill_recorded_replicas
    from testbed.openfaas_ce import running_stack, stop_stack

    info = app.running_gateway()
    stack = running_stack(app.home)
    if stack is not None:
        with _errors():
            stop_stack(app.home, timeout_s=timeout_s)
        click.echo(f"stopped OpenFaaS gateway {stack.url}, Prometheus, AlertManager, provider")
    if not info:
        click.echo("no gateway recorded; nothing to stop")
    else:
        pid = int(info["pid"])
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                click.echo(f"gateway pid {pid} did not stop in {timeout_s:g}s: killed")
        if info.get("backend") == "docker":
            with _errors():
                from testbed.gateway.runtimes.docker import remove_all

                removed = remove_all()
                if removed:
                    click.echo(f"removed {removed} leftover container(s)")
        app.gateway_file.unlink(missing_ok=True)
        click.echo(f"stopped gateway {info['url']} (pid {pid})")
    killed = kill_recorded_replicas(app.home)
    if killed:
        click.echo(f"killed {killed} leftover replica process(es)")
    _remove_stale_cgroups()


def _remove_stale_cgroups() -> None:
    from testbed.gateway.runtimes.cgroups import remove_stale_groups

    stale = remove_stale_groups()
    if stale:
        click.echo(f"removed cgroups of {stale} gateway(s) that did not shut down cleanly")


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def status(app: App, name: str | None, as_json: bool) -> None:
    """Show deployed functions (or one function) with replicas and limits."""
    from rich.console import Console
    from rich.table import Table

    with _errors(), app.platform() as platform:
        statuses = [platform.status(name)] if name else platform.list()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "target": s.target_replicas,
                        "ready": s.replicas_ready,
                        "starting": s.replicas_starting,
                        "cpu_cores": s.limits.cpu_cores,
                        "memory_mb": s.limits.memory_mb,
                        "limits_enforced": s.limits_enforced,
                        "invocations": s.invocation_count,
                        "canary_of": _canary_label(s),
                    }
                    for s in statuses
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"functions at {app.gateway_url}")
    for col in (
        "function",
        "target",
        "ready",
        "starting",
        "cpu",
        "memory",
        "limits",
        "invocations",
    ):
        table.add_column(col, justify="left" if col in ("function", "limits") else "right")
    for s in statuses:
        table.add_row(
            s.name + (f" (canary of {_canary_label(s)})" if _canary_label(s) else ""),
            str(s.target_replicas),
            str(s.replicas_ready),
            str(s.replicas_starting),
            f"{s.limits.cpu_cores:g}" if s.limits.cpu_cores else "-",
            f"{s.limits.memory_mb} MiB" if s.limits.memory_mb else "-",
            "enforced" if s.limits_enforced else "advisory",
            str(s.invocation_count),
        )
    Console().print(table)


@click.command()
@_stack_option
@click.argument("names", nargs=-1)
@pass_app
def deploy(app: App, stack_path: str, names: tuple[str, ...]) -> None:
    """Deploy (or update) functions from the stack file; all of them unless NAMES are given."""
    with _errors():
        deployed = _deploy_stack(app, stack_path, names)
    click.echo(f"deployed: {', '.join(deployed)}")


@click.command()
@click.argument("name")
@pass_app
def remove(app: App, name: str) -> None:
    """Remove function NAME and stop its replicas."""
    with _errors(), app.platform() as platform:
        platform.remove(name)
    click.echo(f"removed {name}")


@click.command()
@click.argument("name")
@click.option("--workflow", is_flag=True, help="NAME is a workflow: run its whole DAG.")
@click.option("--data", "-d", default="", help="Request body: JSON text, or @FILE to read it.")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="Print status, cold start and timings.")
@pass_app
def invoke(app: App, name: str, workflow: bool, data: str, timeout_s: float, verbose: bool) -> None:
    """Invoke function NAME (or, with --workflow, workflow NAME) and print the response.

    A workflow mix (e.g. ``social-network``) runs each of its workflows once.
    """
    targets = _invoke_targets(name, workflow=workflow, data=data)
    ok = True
    with _errors(), app.platform() as platform:
        for target, body in targets:
            if len(targets) > 1:
                click.echo(f"{name}: workflow {target}", err=True)
            result = platform.invoke(target, body, workflow=workflow, timeout_s=timeout_s)
            _print_result(result, workflow=workflow, verbose=verbose)
            ok = ok and result.ok
    if not ok:
        sys.exit(1)


def _invoke_targets(name: str, *, workflow: bool, data: str) -> list[tuple[str, bytes]]:
    """What ``invoke`` sends: (function or workflow name, body) pairs.

    Raises:
        click.BadParameter: ``--data @file`` cannot be read.
        click.ClickException: a mix with ``--data``, or no generated payload for ``name``.
    """
    if data.startswith("@"):
        try:
            return [(name, Path(data[1:]).read_bytes())]
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {data[1:]}: {exc.strerror}", param_hint="--data"
            ) from None
    if data != "" or not workflow:
        return [(name, data.encode())]
    import random

    from functions.workloads import make_payload
    from testbed.core.workflows import load_workflows

    try:
        mixes = load_workflows().mixes
    except ConfigError:
        mixes = {}
    names = sorted(mixes[name].weights) if name in mixes else [name]
    rng = random.Random(0)
    try:
        return [(target, make_payload(target, rng)) for target in names]
    except KeyError:
        raise click.ClickException(
            f"no generated payload for workflow {name!r}; pass one with --data"
        ) from None


def _print_result(result: InvokeResult, *, workflow: bool, verbose: bool) -> None:
    if verbose or workflow:
        click.echo(
            f"status {result.status_code}, cold start: {str(result.cold_start).lower()}, "
            f"{result.duration_s * 1000:.1f} ms",
            err=True,
        )
    if workflow and verbose:
        try:
            for stage in json.loads(result.body).get("stages", []):
                click.echo(
                    f"  {stage['stage']:<24} {stage['duration_s'] * 1000:8.1f} ms"
                    f"{'  (cold)' if stage['cold_start'] else ''}",
                    err=True,
                )
        except (ValueError, AttributeError):
            pass
    click.echo(result.body.decode(errors="replace"))


@click.command()
@click.argument("name")
@click.argument("replicas", type=click.IntRange(min=0))
@pass_app
def scale(app: App, name: str, replicas: int) -> None:
    """Set the number of replicas of function NAME (0 scales to zero)."""
    with _errors(), app.platform() as platform:
        platform.scale(name, replicas=replicas)
    click.echo(f"{name}: target {replicas} replica(s)")


@click.command()
@click.argument("name")
@click.option("--cpu", type=CPU, default=None, help="CPU cores per replica, e.g. 0.5 or 500m.")
@click.option("--memory", type=MEMORY, default=None, help="Memory per replica, e.g. 256M or 1Gi.")
@pass_app
def limits(app: App, name: str, cpu: float | None, memory: int | None) -> None:
    """Change CPU/memory limits of function NAME, live (no restart)."""
    if cpu is None and memory is None:
        raise click.UsageError("give --cpu and/or --memory")
    with _errors(), app.platform() as platform:
        current = platform.status(name).limits
        new = current.merged(Limits(cpu_cores=cpu, memory_mb=memory))
        platform.set_limits(name, new)
        after = platform.status(name)
    enforced = "enforced" if after.limits_enforced else "advisory (no cgroups here)"
    click.echo(
        f"{name}: cpu {new.cpu_cores if new.cpu_cores else 'unlimited'}, memory "
        f"{f'{new.memory_mb} MiB' if new.memory_mb else 'unlimited'} ({enforced})"
    )


def _canary_label(status: FunctionStatus) -> str | None:
    """``"f, 10 %"`` for a canary of ``f`` taking at most 10 % of its calls, else None."""
    target = canary_of(status.spec)
    return f"{target[0]}, {target[1]:.0%}" if target is not None else None


@click.command()
@click.argument("name")
@click.option("--cpu", type=CPU, default=None, help="The canary's CPU cores, e.g. 0.5 or 500m.")
@click.option("--memory", type=MEMORY, default=None, help="The canary's memory, e.g. 256M.")
@click.option(
    "--share",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=DEFAULT_SHARE,
    show_default=True,
    help="Most of NAME's calls the canary takes.",
)
@click.option("--end", is_flag=True, help="Remove NAME's canary instead.")
@pass_app
def canary(
    app: App, name: str, cpu: float | None, memory: int | None, share: float, end: bool
) -> None:
    """Try limits on one canary replica of function NAME, beside its own replicas.

    The canary (function NAME-canary) takes at most --share of NAME's calls, only when it is
    ready and free; its calls are counted under its own name (`aquatope status`). Unset
    limits keep NAME's. Run it again to change them, or with --end to remove it.
    """
    if not end and cpu is None and memory is None:
        raise click.UsageError("give --cpu and/or --memory (or --end)")
    with _errors(), app.platform() as platform:
        if end:
            gone = end_canary(platform, name)
            click.echo(f"{name}: canary removed" if gone else f"{name}: no canary to remove")
            return
        made = set_canary(platform, name, Limits(cpu_cores=cpu, memory_mb=memory), share=share)
        limits = platform.status(made).limits
    click.echo(
        f"{made}: cpu {limits.cpu_cores or 'unlimited'}, memory "
        f"{f'{limits.memory_mb} MiB' if limits.memory_mb else 'unlimited'}, "
        f"at most {share:.0%} of {name}'s calls"
    )


@click.command()
@pass_app
def password(app: App) -> None:
    """Print the gateway's admin password (basic auth for /system/*)."""
    click.echo(app.password())


@click.command()
@click.option(
    "--backend", type=click.Choice(["local", "docker"]), default="local", show_default=True
)
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_GATEWAY_PORT, show_default=True
)
@pass_app
def gateway(app: App, backend: str, host: str, port: int) -> None:
    """Run the gateway in the foreground (Ctrl-C stops it and its replicas)."""
    from testbed.gateway.app import main as gateway_main

    sys.exit(
        gateway_main(
            [
                "--backend",
                backend,
                "--host",
                host,
                "--port",
                str(port),
                "--state-dir",
                str(app.home),
            ]
        )
    )
