"""``aquatope scheduler list|run``: show the registered policies, or run the scheduler daemon."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

from testbed.cli._app import App, pass_app
from testbed.core.errors import ConfigError

__all__ = ["parse_params", "scheduler"]


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    """Turn ``("k=v", ...)`` into a dict.

    Raises:
        click.BadParameter: an item without ``=`` or with an empty key.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected k=v, got {item!r}", param_hint="'--param'")
        out[key.strip()] = value
    return out


@click.group()
def scheduler() -> None:
    """List policies or run the scheduler daemon against the gateway."""


@scheduler.command("list")
def list_policies() -> None:
    """Print every registered policy with its description and parameters."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from scheduler.registry import available_policies

    table = Table(title="Scheduling policies", show_lines=False)
    table.add_column("policy", style="bold")
    table.add_column("description")
    table.add_column("parameters (--param k=v)")
    for name, info in available_policies().items():
        params = "\n".join(
            f"{p} ({_type_name(kind)}) = {default!r}"
            for p, (kind, default) in info.parameters.items()
        )
        if info.presets:
            fixed = ", ".join(f"{k}={v!r}" for k, v in info.presets.items())
            params = f"[preset {fixed}]" + ("\n" + params if params else "")
        table.add_row(name, escape(info.description), escape(params or "-"))
    Console(width=160).print(table)


@scheduler.command("run")
@click.option("--policy", "policy_name", required=True, help="Policy name (see `list`).")
@click.option(
    "--tick",
    "tick_s",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between decisions.",
)
@click.option("--param", "params", multiple=True, metavar="K=V", help="Policy parameter.")
@click.option(
    "--decisions",
    "decisions_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSON line per tick here (decisions.jsonl).",
)
@click.option(
    "--log-every-decision",
    is_flag=True,
    help="List every function on every --decisions line, not only those that changed.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Persist the policy's state here each tick; resume from it on start.",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: run until SIGTERM/SIGINT).",
)
@click.option("--t0", "t0_s", type=float, default=None, help="Unix time that t_s counts from.")
@click.option(
    "--workflows",
    "workflows_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Workflow definitions to hand to the policy.",
)
@click.option(
    "--save-every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Persist the state every N ticks (large fleets: raise it).",
)
@click.option("-q", "--quiet", is_flag=True, help="Log warnings only.")
@pass_app
def run(
    app: App,
    policy_name: str,
    tick_s: float,
    params: tuple[str, ...],
    decisions_path: Path | None,
    log_every_decision: bool,
    state_path: Path | None,
    duration_s: float | None,
    t0_s: float | None,
    workflows_dir: Path | None,
    save_every: int,
    quiet: bool,
) -> None:
    """Run the scheduler daemon: observe the gateway, run the policy every tick, scale."""
    from scheduler.clock import WallClock
    from scheduler.daemon import Daemon
    from scheduler.registry import create_policy

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        policy = create_policy(policy_name, parse_params(params))
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="'--policy'") from None
    except (ValueError, ConfigError) as exc:
        raise click.BadParameter(str(exc), param_hint="'--param'") from None
    workflows = {}
    if workflows_dir is not None:
        from testbed.core.workflows import load_workflows

        try:
            workflows = load_workflows(workflows_dir).workflows
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    platform = app.platform()
    clock = WallClock()
    try:
        daemon = Daemon(
            platform,
            policy,
            clock=clock,
            tick_s=tick_s,
            workflows=workflows,
            state_path=state_path,
            decisions_path=decisions_path,
            log_every_decision=log_every_decision,
            policy_name=policy_name,
            t0_s=t0_s,
            save_every=save_every,
        )
    except ConfigError as exc:
        platform.close()
        raise click.ClickException(str(exc)) from None

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("signal %d: stopping after this tick", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    resumed = f" (resumed after {daemon.ticks} ticks)" if daemon.resumed else ""
    click.echo(
        f"scheduler: policy {policy_name} every {tick_s:g}s against {app.gateway_url}{resumed}",
        err=True,
    )
    until_s = clock.now() + duration_s if duration_s is not None else None
    try:
        ticks = daemon.run(stop, until_s=until_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        platform.close()
    click.echo(f"scheduler: stopped after {ticks} ticks", err=True)
