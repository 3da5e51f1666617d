"""``aquatope trace generate|show|plot``: synthetic traces and trace summaries.

Azure 2019 files are summarised at one-minute resolution (idle times between busy
minutes, CV of per-minute counts); Azure 2021 files from their arrival times.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from testbed.core.atomic import atomic_path
from testbed.core.errors import ConfigError

__all__ = ["trace"]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _durations_path(out: Path) -> Path | None:
    match = re.match(r"invocations_per_function_md\.anon\.(d\d+)\.csv$", out.name)
    if not match:
        return None
    return out.with_name(f"function_durations_percentiles.anon.{match.group(1)}.csv")


@click.group()
def trace() -> None:
    """Generate, inspect and plot invocation traces (Azure 2019/2021 formats)."""


@trace.command()
@click.option(
    "--kind",
    type=click.Choice(["bursty", "diurnal", "flash-crowd", "azure-like", "timers", "poisson"]),
    required=True,
    help="Generator.",
)
@click.option(
    "--functions",
    type=click.IntRange(min=1, max=100_000),
    default=1,
    show_default=True,
    help="Number of functions.",
)
@click.option(
    "--minutes",
    type=click.IntRange(min=1, max=14 * 1440),
    default=60,
    show_default=True,
    help="Length in minutes.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--rate",
    "rate_per_min",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=(
        "Mean invocations per minute per function (bursty, diurnal, flash-crowd: default 60; "
        "poisson: default 1)."
    ),
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output CSV (Azure 2019 invocations format).",
)
def generate(
    kind: str, functions: int, minutes: int, seed: int, rate_per_min: float | None, output: Path
) -> None:
    """Write a seeded synthetic trace in the Azure 2019 format.

    azure-like traces also get a durations file beside the output when the output is named
    like invocations_per_function_md.anon.dNN.csv.
    """
    from loadgen.traces import synthesize, write_azure2019, write_azure2019_durations

    options: dict[str, object] = {}
    if rate_per_min is not None:
        if kind in ("azure-like", "timers"):
            why = "draws its own rates" if kind == "azure-like" else "fires once per period"
            raise click.BadParameter(f"{kind} {why}", param_hint="--rate")
        options["rate_per_min"] = rate_per_min
    with _errors():
        counts = synthesize(kind, functions=functions, minutes=minutes, seed=seed, **options)
        try:
            write_azure2019(counts, output)
        except OSError as exc:
            raise ConfigError(f"{output}: cannot write: {exc.strerror or exc}") from None
        durations = _durations_path(output) if kind == "azure-like" else None
        if durations is not None:
            write_azure2019_durations(counts, durations)
    total = int(counts.counts.sum())
    click.echo(
        f"wrote {output}: {kind}, {functions} functions x {minutes} min, "
        f"{total} invocations ({total / minutes / 60:.2f}/s), seed {seed}"
    )
    if durations is not None:
        click.echo(f"wrote {durations}")


def _fmt_s(x: float) -> str:
    if math.isnan(x):
        return "-"
    if x >= 3600:
        return f"{x / 3600:.1f}h"
    if x >= 60:
        return f"{x / 60:.1f}m"
    return f"{x:.2f}s"


@trace.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Functions to list (busiest first).",
)
def show(files: tuple[Path, ...], top: int) -> None:
    """Summarise a trace: per-function rate, idle-time percentiles and burstiness (CV)."""
    from rich.console import Console
    from rich.table import Table

    from loadgen.traces import detect_format, read_azure2019_counts, read_azure2021

    with _errors():
        fmt = detect_format(files[0])
        if fmt == "azure2019":
            counts = read_azure2019_counts(list(files))
            rows = counts.summary()
            minutes = counts.minutes
            total = int(counts.counts.sum())
            resolution = "per-minute counts"
        else:
            if len(files) > 1:
                raise click.BadParameter("Azure 2021 traces are one file", param_hint="FILES")
            tr = read_azure2021(files[0])
            rows = tr.summary()
            minutes = int(tr.duration_s // 60)
            total = tr.total
            resolution = "arrival times"
    console = Console()
    console.print(
        f"[bold]{', '.join(f.name for f in files)}[/] ({fmt}): {len(rows)} functions, "
        f"{minutes} min, {total} invocations, {total / max(minutes, 1) / 60:.2f}/s "
        f"(statistics from {resolution})"
    )
    triggers: dict[str, list[int]] = {}
    for r in rows:
        t = triggers.setdefault(r.trigger or "?", [0, 0])
        t[0] += 1
        t[1] += r.count
    if len(triggers) > 1 or "?" not in triggers:
        console.print(
            "triggers (share of functions / of invocations): "
            + ", ".join(
                f"{k} {v[0] / len(rows):.0%}/{v[1] / max(total, 1):.0%}"
                for k, v in sorted(triggers.items(), key=lambda kv: -kv[1][0])
            )
        )
    table = Table(title=f"busiest {min(top, len(rows))} of {len(rows)} functions")
    for col in ("function", "trigger", "calls", "rate/min", "idle50", "idle90", "idle99", "CV"):
        table.add_column(
            col, justify="left" if col in ("function", "trigger") else "right", no_wrap=True
        )
    for r in rows[:top]:
        table.add_row(
            r.name[:12],
            r.trigger or "-",
            str(r.count),
            f"{r.rate_per_min:.3g}",
            _fmt_s(r.idle_p50_s),
            _fmt_s(r.idle_p90_s),
            _fmt_s(r.idle_p99_s),
            "-" if math.isnan(r.cv) else f"{r.cv:.2f}",
        )
    console.print(table)


@trace.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PNG to write.",
)
@click.option(
    "--functions",
    "n_functions",
    type=click.IntRange(min=1, max=20),
    default=5,
    show_default=True,
    help="Busiest functions drawn individually.",
)
def plot(files: tuple[Path, ...], output: Path, n_functions: int) -> None:
    """Plot invocations per minute (total and busiest functions) and the rate distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from loadgen.traces import detect_format, read_azure2019_counts, read_azure2021

    with _errors():
        if detect_format(files[0]) == "azure2019":
            counts = read_azure2019_counts(list(files))
            names = list(counts.names)
            per_min = {n: row for n, row in zip(names, counts.counts, strict=True)}
        else:
            tr = read_azure2021(files[0])
            per_min = tr.binned(60.0)
    totals = {n: int(v.sum()) for n, v in per_min.items()}
    busiest = sorted(per_min, key=lambda n: -totals[n])[:n_functions]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), constrained_layout=True)
    total = np.sum(np.vstack(list(per_min.values())), axis=0)
    axes[0].plot(np.arange(total.size), total, lw=0.8)
    axes[0].set(
        title=f"{files[0].name}: all {len(per_min)} functions",
        xlabel="minute",
        ylabel="invocations / min",
    )
    for n in busiest:
        axes[1].plot(np.arange(per_min[n].size), per_min[n], lw=0.7, label=n[:10])
    axes[1].set(
        title=f"busiest {len(busiest)} functions", xlabel="minute", ylabel="invocations / min"
    )
    axes[1].legend(fontsize=7, loc="upper right")
    rates = np.sort(np.asarray([totals[n] for n in per_min], dtype=float) / total.size)
    positive = rates[rates > 0]
    if positive.size:
        zero = rates.size - positive.size
        y = (zero + np.arange(1, positive.size + 1)) / rates.size
        axes[2].step(positive, y, where="post")
        axes[2].set_xscale("log")
    axes[2].set(
        title="CDF of functions by mean rate (never-invoked ones sit at the left edge)",
        xlabel="mean invocations / min",
        ylabel="share of functions",
    )
    with atomic_path(output) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    click.echo(f"wrote {output}")
