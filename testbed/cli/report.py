"""``aquatope compare DIR...`` and ``aquatope report DIR... -o report.html``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from testbed.core.errors import ConfigError

__all__ = ["compare", "report"]

_DIRS = click.argument(
    "dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
_BASELINE = click.option(
    "--baseline",
    default=None,
    metavar="NAME",
    help="Policy label to compute ratios against (default: the first policy found).",
)


@click.command()
@_DIRS
@_BASELINE
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the comparison as JSON to this file.",
)
def compare(dirs: tuple[Path, ...], baseline: str | None, json_path: Path | None) -> None:
    """Compare experiment results: each policy's figures with 95% CIs and ratios to a baseline."""
    from rich.console import Console

    from testbed.core.atomic import atomic_write_text
    from testbed.report.compare import compare_runs, load_metrics
    from testbed.report.tables import comparison_table

    try:
        comp = compare_runs(load_metrics(dirs), baseline=baseline)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _warn_interrupted(dirs)
    Console(width=max(Console().width, 120)).print(comparison_table(comp))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(comp.to_dict(), indent=2) + "\n")
        click.echo(f"wrote {json_path}")


def _warn_interrupted(dirs: tuple[Path, ...]) -> None:
    """Name every run left out because it did not finish (never drop a policy silently)."""
    from testbed.experiment.results import find_interrupted

    for run, why in find_interrupted(dirs):
        click.echo(f"note: not compared, run did not finish: {run} ({why})", err=True)


@click.command()
@_DIRS
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="HTML file to write; the PNG figures are written beside it.",
)
@_BASELINE
@click.option("--title", default="Scheduler comparison", show_default=True, help="Page title.")
def report(dirs: tuple[Path, ...], output: Path, baseline: str | None, title: str) -> None:
    """Write one self-contained HTML report (tables, latency CDFs, violations, replicas, cost)."""
    from testbed.report.html import write_report

    try:
        result = write_report(dirs, output, baseline=baseline, title=title)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _warn_interrupted(dirs)
    click.echo(f"report: {result.html_path.resolve()}")
    for png in result.png_paths:
        click.echo(f"figure: {png}")
