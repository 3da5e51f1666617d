"""``aquatope load``: replay a trace open-loop against the gateway, or serve Locust's web UI.

Locust (and gevent's monkey-patching) is imported only when the command runs.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any

import click

from testbed.cli._app import App, pass_app
from testbed.cli.types import DURATION
from testbed.core.errors import ConfigError

__all__ = ["load"]


def _read(files: tuple[Path, ...], *, seed: int, spread: str, top: int | None) -> Any:
    from loadgen.traces import detect_format, read_azure2019_counts, read_azure2021

    if detect_format(files[0]) == "azure2019":
        counts = read_azure2019_counts(list(files))
        if top is not None:
            counts = counts.subset(top=top)
        return counts.to_trace(spread=spread, seed=seed)  # type: ignore[arg-type]
    if len(files) > 1:
        raise ConfigError("Azure 2021 traces are one file")
    return read_azure2021(files[0], top=top)


def _render(p: Any) -> Any:
    from rich.table import Table

    done = min(1.0, p.elapsed_s / p.duration_s) if p.duration_s > 0 else 1.0
    bar = "█" * int(done * 30) + "░" * (30 - int(done * 30))
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"{bar} {p.elapsed_s:6.1f}/{p.duration_s:.0f} s",
        f"sent {p.dispatched}/{p.scheduled}",
        f"rate {p.rate_per_s:7.1f}/s",
        f"errors {p.errors}",
        f"dropped {p.dropped}",
        f"late {p.late}",
        "p95 " + ("-" if math.isnan(p.p95_latency_s) else f"{p.p95_latency_s * 1000:.1f} ms"),
    )
    return table


def _write_meta(out: Path, info: dict[str, Any]) -> None:
    from testbed.core.atomic import atomic_write_json

    path = out / "meta.json"
    if path.exists():  # an experiment runner owns it
        return
    atomic_write_json(path, info)


@click.command()
@click.option(
    "--trace",
    "trace_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trace file (Azure 2019 day files may be repeated; or Azure 2021).",
)
@click.option(
    "--workflow",
    "workflows",
    multiple=True,
    help="Workflow, mix (e.g. social-network) or function:NAME; repeatable. "
    "Trace functions are dealt round-robin onto them, busiest first.",
)
@click.option(
    "--headless/--web",
    default=True,
    help="Replay open-loop and exit (default), or serve Locust's web UI.",
)
@click.option(
    "--duration",
    "duration_s",
    type=DURATION,
    default=None,
    help="Replay only the first part of the (compressed) trace, e.g. 10m.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Results directory (requests.csv, stages.csv, ...).",
)
@click.option(
    "--compress",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Time compression (144: a day in 10 minutes).",
)
@click.option(
    "--rate-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every rate (after compression).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=None,
    help="Map this many of the busiest trace functions (default: one per workflow).",
)
@click.option(
    "--spread",
    type=click.Choice(["poisson", "even"]),
    default="poisson",
    show_default=True,
    help="Placement of Azure 2019 arrivals inside each minute.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1, max=60_000),
    default=2000,
    show_default=True,
    help="Concurrent requests; beyond it requests are dropped.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=DURATION,
    default="60s",
    show_default=True,
    help="Per-request timeout.",
)
@click.option(
    "--spin-ms",
    type=click.FloatRange(min=0, max=100),
    default=0.0,
    show_default=True,
    help="Busy-wait this long before each send: more punctual sends, but it costs CPU "
    "that the system under test may need on a small host.",
)
@click.option(
    "--port",
    type=click.IntRange(min=1, max=65535),
    default=8089,
    show_default=True,
    help="Web UI port (--web).",
)
@click.option("--web-host", default="127.0.0.1", show_default=True, help="Web UI address.")
@pass_app
def load(
    app: App,
    trace_files: tuple[Path, ...],
    workflows: tuple[str, ...],
    headless: bool,
    duration_s: float | None,
    output: Path | None,
    compress: float,
    rate_scale: float,
    top: int | None,
    spread: str,
    seed: int,
    max_in_flight: int,
    timeout_s: float,
    spin_ms: float,
    port: int,
    web_host: str,
) -> None:
    """Replay a trace against the gateway with Locust (open loop), or drive it by hand.

    \b
    aquatope load --trace T.csv --workflow ml-pipeline --duration 5m -o results/run1
    aquatope load --web --trace T.csv --workflow social-network   # http://127.0.0.1:8089
    """
    if not workflows:
        raise click.UsageError("name at least one --workflow")
    if headless:
        if not trace_files:
            raise click.UsageError("--headless needs --trace")
        if output is None:
            raise click.UsageError("--headless needs -o/--output DIR")
    if duration_s is not None and duration_s <= 0:
        raise click.BadParameter("must be positive", param_hint="--duration")
    if timeout_s <= 0:
        raise click.BadParameter("must be positive", param_hint="--timeout")
    url = app.gateway_url
    try:
        from loadgen.plan import plan
        from loadgen.trace import Trace

        if trace_files:
            tr = _read(trace_files, seed=seed, spread=spread, top=top)
        else:  # web UI without a trace: user classes only, users set by hand
            import numpy as np

            tr = Trace({"manual": np.zeros(1)}, 60.0)
        the_plan = plan(
            tr,
            list(workflows),
            top=top,
            compress=compress,
            rate_scale=rate_scale,
            duration_s=duration_s,
            seed=seed,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if headless:
        assert output is not None
        _headless(
            the_plan,
            url,
            output,
            seed=seed,
            max_in_flight=max_in_flight,
            timeout_s=timeout_s,
            spin_s=spin_ms / 1000.0,
            meta={
                "kind": "load",
                "trace": [str(f) for f in trace_files],
                "workflows": list(workflows),
                "compress": compress,
                "rate_scale": rate_scale,
                "duration_s": duration_s,
                "seed": seed,
                "gateway": url,
                "mapping": the_plan.mapping,
            },
        )
    else:
        _web(
            the_plan,
            url,
            host=web_host,
            port=port,
            seed=seed,
            output=output,
            follow_trace=bool(trace_files),
        )


def _headless(
    the_plan: Any,
    url: str,
    output: Path,
    *,
    seed: int,
    max_in_flight: int,
    timeout_s: float,
    spin_s: float,
    meta: dict[str, Any],
) -> None:
    from rich.console import Console
    from rich.live import Live

    from loadgen.options import ReplayOptions
    from loadgen.run import replay

    console = Console(stderr=True)
    sched = the_plan.schedule
    console.print(
        f"replaying {len(sched)} requests over {sched.duration_s:.0f} s "
        f"({sched.rate_per_s:.1f}/s) to {url}: "
        + ", ".join(f"{k} {v}" for k, v in sched.counts_by_target().items())
    )
    with Live(console=console, auto_refresh=False, transient=False) as live:
        try:
            options = ReplayOptions(
                seed=seed, max_in_flight=max_in_flight, timeout_s=timeout_s, spin_s=spin_s
            )
            result = replay(
                the_plan,
                url,
                output,
                options,
                on_progress=lambda p: live.update(_render(p), refresh=True),
            )
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    _write_meta(
        output,
        {
            **meta,
            "t0": result.t0_unix_s,
            "duration_s": result.duration_s,
            "complete": True,
            "python": platform.python_version(),
            "host": platform.node(),
            "written_at": time.time(),
        },
    )
    late = f"{result.lateness_p50_s * 1000:.2f}/{result.lateness_p99_s * 1000:.2f} ms"
    click.echo(
        f"sent {result.sent}/{result.scheduled} ({result.achieved_rate_per_s:.1f}/s of "
        f"{result.intended_rate_per_s:.1f}/s intended), ok {result.ok}, errors {result.errors}, "
        f"dropped {result.dropped}, late {result.late}; send lateness p50/p99 {late}\n"
        f"results in {output}"
    )


def _web(
    the_plan: Any,
    url: str,
    *,
    host: str,
    port: int,
    seed: int,
    output: Path | None,
    follow_trace: bool,
) -> None:
    from loadgen.run import serve_web

    try:
        serve_web(
            the_plan,
            url,
            host=host,
            port=port,
            seed=seed,
            results_dir=output,
            follow_trace=follow_trace,
            ready=lambda ui: click.echo(
                f"Locust web UI on {ui} (target {url}); Ctrl-C to stop", err=True
            ),
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
