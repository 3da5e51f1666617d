"""``aquatope experiment run|check|demo``: run scheduler comparisons and show the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from testbed.core.errors import ConfigError, TestbedError

__all__ = ["experiment", "run_demo"]

DEMO_CONFIG = Path("experiments/demo.yaml")
DEMO_OUT = Path("results/demo")


@click.group()
def experiment() -> None:
    """Run scheduler comparison experiments (config files in experiments/)."""


def _load(config: Path) -> Any:
    from testbed.experiment.spec import load_spec

    try:
        return load_spec(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _run(config: Path, out: Path) -> Any:
    """Run with a rich progress display; returns the ExperimentResult."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from testbed.experiment.results import ResultsLock
    from testbed.experiment.run import RunError, prepare, run_experiment

    spec = _load(config)
    try:
        prepare(spec)  # fail fast on policies, workflows and functions, before any output
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    console = Console(stderr=True)
    total_runs = len(spec.seeds) * len(spec.policies)
    span = spec.duration_s + spec.drain_s
    console.print(
        f"[bold]{spec.name}[/]: {len(spec.policies)} policies × {len(spec.seeds)} seeds on "
        f"{spec.backend}, {spec.duration_s:g} s each (warm-up {spec.warmup_s:g} s) → {out}"
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        overall = progress.add_task("all runs", total=total_runs, status="")
        tasks: dict[str, Any] = {}

        def on_progress(label: str, elapsed_s: float, status: str) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"  {label}", total=span, status=status)
            progress.update(tasks[label], completed=min(elapsed_s, span), status=status)

        def on_done(outcome: Any) -> None:
            task = tasks.pop(outcome.label, None)
            if task is not None:
                progress.update(task, completed=span, status=f"done: {outcome.requests} requests")
            progress.advance(overall)

        try:
            with ResultsLock(out):
                return run_experiment(spec, out, on_progress=on_progress, on_run_done=on_done)
        except (ConfigError, RunError) as exc:
            raise click.ClickException(str(exc)) from None
        except TestbedError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


@experiment.command("run")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Results directory (one sub-directory per policy and seed).",
)
def run_cmd(config: Path, out: Path) -> None:
    """Run every policy × seed of CONFIG on the identical trace, writing results to -o."""
    result = _run(config, out)
    click.echo(f"results: {result.out_dir.resolve()} ({len(result.runs)} runs)")
    click.echo(
        f"next: aquatope compare {result.out_dir}  |  aquatope report {result.out_dir} "
        f"-o {result.out_dir / 'report.html'}"
    )


@experiment.command("check")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_cmd(config: Path) -> None:
    """Validate CONFIG (fields, workflows, stack functions, policies) without running it."""
    from testbed.experiment.run import prepare

    spec = _load(config)
    try:
        prep = prepare(spec)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{config}: ok — {len(spec.policies)} policies "
        f"({', '.join(p.label for p in spec.policies)}), seeds {list(spec.seeds)}, "
        f"workflows {', '.join(prep.workflows)}"
    )


def run_demo(config: Path = DEMO_CONFIG, out: Path = DEMO_OUT, baseline: str | None = None) -> Path:
    """Run the demo experiment, print the comparison table and write the HTML report.

    Returns:
        The report's path.
    """
    from rich.console import Console

    from testbed.report.html import write_report
    from testbed.report.tables import comparison_table

    result = _run(config, out)
    try:
        report = write_report(
            [result.out_dir],
            result.out_dir / "report.html",
            baseline=baseline,
            title=f"Aquatope testbed demo ({config.name})",
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    Console(width=max(Console().width, 120)).print(comparison_table(report.comparison))
    return report.html_path


@experiment.command("demo")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEMO_CONFIG,
    show_default=True,
    help="Experiment config to run.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEMO_OUT,
    show_default=True,
    help="Results directory.",
)
@click.option("--baseline", default=None, help="Policy label for ratios (default: the first).")
def demo_cmd(config: Path, out: Path, baseline: str | None) -> None:
    """The demo: run the config, print the comparison table and the report's path."""
    path = run_demo(config, out, baseline)
    click.echo(f"report: {path.resolve()}")
