"""``aquatope evaluate``: the headline comparison, every policy × trace kind × seed, on the sim.

Runs the grid of an evaluation file in parallel worker processes (resuming a grid that was
interrupted), then summarises it into a Markdown page with tables, intervals, frontier plots
and the paper's two claims as measured (``testbed.report.evaluation``).
"""

from __future__ import annotations

import datetime
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from testbed.core.errors import TestbedError

if TYPE_CHECKING:
    from testbed.experiment.evaluation import CellResult, EvaluationSpec
    from testbed.report.evaluation import EvaluationSummary

__all__ = ["evaluate"]

DEFAULT_CONFIG = "experiments/evaluation.yaml"


@click.command()
@click.argument("config", required=False, default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_dir",
    default="results/evaluation",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the runs go (an interrupted grid resumes here).",
)
@click.option(
    "--results-md",
    default="docs/RESULTS.md",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Markdown summary to (re)write.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Override the seed count.")
@click.option("--trace", "traces", multiple=True, help="Only this trace (repeatable).")
@click.option(
    "--policy",
    "families",
    multiple=True,
    help="Only this policy: a family (keep-alive) or one point of its sweep "
    "(keep-alive-window-s-60). Repeatable.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: the core count).",
)
@click.option(
    "--backend",
    type=click.Choice(["sim", "local", "docker", "openfaas"]),
    default=None,
    help="Run on this backend instead of the file's: a live confirmation of simulated "
    "results (live runs go one at a time, each as long as its trace; narrow them with "
    "--trace, --policy and --seeds, and give them their own -o and --results-md).",
)
@click.option("--summarise-only", is_flag=True, help="Skip running; summarise what is there.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Run every cell again, replacing complete runs already in --out (after a code change).",
)
def evaluate(
    config: str,
    out_dir: Path,
    results_md: Path,
    seeds: int | None,
    traces: tuple[str, ...],
    families: tuple[str, ...],
    jobs: int | None,
    backend: str | None,
    summarise_only: bool,
    fresh: bool,
) -> None:
    """Run the evaluation grid in CONFIG and write its summary (tables, plots, claims)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from testbed.experiment.evaluation import (
        WorkLeft,
        cells,
        load_evaluation,
        run_evaluation,
    )

    console = Console(stderr=True)
    try:
        spec = load_evaluation(
            config,
            seeds=seeds,
            traces=traces or None,
            families=families or None,
            backend=backend,
        )
        failures: list[str] = []
        if not summarise_only:
            # the bar and its ETA count work (each run weighted by how long runs of its trace
            # and policy took, before and in this grid), not runs: a pre-warmer's run takes
            # ten baselines' time
            work = WorkLeft(list(cells(spec)), out_dir)
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[runs]} runs"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=console,
            ) as progress:
                # the total changes as runs teach the estimates, and rich forgets its speed
                # whenever it does: the ETA is the pace of the work done so far
                task = progress.add_task("evaluating", total=None, runs="", eta="unknown")
                started = time.monotonic()

                def done(result: CellResult, n: int, total: int) -> None:
                    cell = result.cell
                    if result.error:
                        failures.append(
                            f"{cell.trace}/{cell.label}/seed-{cell.seed}: {result.error}"
                        )
                        progress.console.print(f"[red]failed[/red] {failures[-1]}")
                    work.finished(cell, ran=result.ran)  # a complete run reused: no work
                    left = work.eta_s(time.monotonic() - started)
                    eta = "unknown" if left is None else _hms(left)
                    progress.update(
                        task,
                        total=work.done_s + work.left_s,
                        completed=work.done_s,
                        runs=f"{n}/{total}",
                        description=f"{cell.trace} {cell.label}",
                        eta=eta,
                    )
                    if result.ran and not console.is_terminal:
                        # no live bar in a log file: one line per run, with the ETA
                        share = 100.0 * work.done_s / max(work.done_s + work.left_s, 1e-9)
                        line = (
                            f"[{n}/{total}] {cell.trace} {cell.label} seed-{cell.seed} done; "
                            f"{share:.0f} % of the work, about {eta} left"
                        )
                        console.print(line, soft_wrap=True)  # one line, however long

                results = run_evaluation(spec, out_dir, jobs=jobs, on_cell_done=done, fresh=fresh)
            reused = sum(1 for r in results if not r.ran)
            if reused:
                console.print(
                    f"reused {reused} complete run(s) already in {out_dir} (they may come from "
                    "older code: --fresh runs them again)"
                )
        command = _command_line(config, out_dir, results_md, seeds, traces, families, backend)
        # the directory may hold runs of policies left out by --policy: their families and
        # knobs (the oracle is a bound, not a competitor) come from the whole file
        whole = load_evaluation(config, backend=backend) if families else spec
        summary, written = summarise_into(spec, out_dir, results_md, command=command, labels=whole)
    except TestbedError as exc:
        raise click.ClickException(str(exc)) from None
    _print_summary(summary)
    console.print(f"wrote {results_md} and {len(written)} figures")
    if failures:
        raise click.ClickException(f"{len(failures)} run(s) failed; first: {failures[0]}")


def _hms(seconds: float) -> str:
    """``h:mm:ss``, to the second."""
    return str(datetime.timedelta(seconds=round(seconds)))


def _command_line(
    config: str,
    out_dir: Path,
    results_md: Path,
    seeds: int | None,
    traces: tuple[str, ...],
    families: tuple[str, ...],
    backend: str | None = None,
) -> str:
    """The command that reproduces this evaluation (printed at the top of the summary)."""
    words = ["aquatope", "evaluate", config, "-o", str(out_dir), "--results-md", str(results_md)]
    if backend is not None:
        words += ["--backend", backend]
    if seeds is not None:
        words += ["--seeds", str(seeds)]
    for trace in traces:
        words += ["--trace", trace]
    for family in families:
        words += ["--policy", family]
    return " ".join(shlex.quote(w) for w in words)


def _print_summary(summary: EvaluationSummary) -> None:
    """Each trace's table (means ± 95 % half-widths) and the claims, on the terminal."""
    from rich.console import Console
    from rich.table import Table

    from testbed.report.evaluation import (
        COLUMNS,
        DIGITS,
        claim_text,
        dominance_text,
        format_estimate,
        is_aquatope,
    )

    console = Console(width=max(Console().width, 120))
    for trace, points in summary.traces.items():
        table = Table(title=f"{trace} (mean ± 95 % CI over seeds)")
        table.add_column("policy")
        for _, title, _ in COLUMNS:
            table.add_column(title, justify="right")
        for p in points:
            table.add_row(
                p.label,
                *(format_estimate(p.estimates[k], DIGITS.get(k, 2)) for k, _, _ in COLUMNS),
            )
        console.print(table)
    for claim in summary.claims:
        what = "QoS violations" if claim.kind == "qos" else "cost"
        console.print(f"{claim.trace} {claim.aquatope} {what}: {claim_text(claim)}")
    for trace, points in summary.traces.items():
        for ours in (p for p in points if is_aquatope(p.family)):
            text = dominance_text(ours, points)
            console.print(f"{trace} {ours.label} dominated by a baseline on seeds: {text}")


def summarise_into(
    spec: EvaluationSpec,
    out_dir: Path,
    results_md: Path,
    *,
    command: str,
    labels: EvaluationSpec | None = None,
) -> tuple[EvaluationSummary, list[Path]]:
    """Summarise the runs of ``spec``'s traces and seeds under ``out_dir`` into
    ``results_md``; every policy's runs there are read, each label's family and knob taken
    from ``labels`` (default ``spec``). Runs of other seeds (a grid going on past
    ``--seeds``) are left out, so every point is paired over the same seeds."""
    from testbed.experiment.results import find_runs
    from testbed.report.compare import load_metrics
    from testbed.report.evaluation import summarise, write_results_markdown

    runs = {}
    wanted = set(spec.seeds)
    for trace in spec.experiments:
        root = out_dir / trace
        found = load_metrics(find_runs([root])) if root.is_dir() else []
        runs[trace] = [m for m in found if m.seed in wanted]
    percentile = _qos_percentile(spec)
    known = labels if labels is not None else spec
    summary = summarise(
        runs, families=known.families, knobs=dict(known.knobs), qos_percentile=percentile
    )
    exp = next(iter(spec.experiments.values()))
    counts = sorted({len(p.per_seed) for pts in summary.traces.values() for p in pts})
    seeds = (
        f"{counts[0]} seed{'s' if counts[0] != 1 else ''} per point"
        if len(counts) == 1
        else f"{counts[0]} to {counts[-1]} seeds per point (the seeds column)"
        if counts
        else "no runs yet"
    )
    preamble = (f"{spec.description.strip()}\n\n" if spec.description else "") + (
        f"Backend `{exp.backend}`, workflows {', '.join(exp.workflows)}, "
        f"{exp.duration_s / 60:g} trace minutes per run of which the first "
        f"{exp.warmup_s / 60:g} train the policies and are not scored, "
        f"{seeds}{_host_cores(spec)}; run on {os.cpu_count()} cores. "
        f"Raw runs: `{out_dir}`. "
        + (
            "Simulator fidelity against live runs: docs/simulator.md."
            if exp.backend == "sim"
            else "Live runs, one at a time, on this machine."
        )
    )
    written = write_results_markdown(
        summary,
        results_md,
        title=f"Results: {spec.name}",
        command=command,
        preamble=preamble,
    )
    return summary, written


def _host_cores(spec: EvaluationSpec) -> str:
    """The simulated host's cores, where a trace sets them (else the profile's machine)."""
    cores = {
        trace: exp.backend_options.get("host_cores")
        for trace, exp in spec.experiments.items()
        if exp.backend == "sim"
    }
    if not cores or not any(v is not None for v in cores.values()):
        return ""
    if len(set(cores.values())) == 1:
        return f", a simulated host of {next(iter(cores.values()))} cores"
    parts = [f"{trace} {'the profile machine' if v is None else v}" for trace, v in cores.items()]
    return f", simulated host cores: {', '.join(parts)}"


def _qos_percentile(spec: EvaluationSpec) -> float:
    """The QoS percentile of the evaluated workflows (the strictest when they differ)."""
    from testbed.core.workflows import load_workflows

    exp = next(iter(spec.experiments.values()))
    catalog = load_workflows(exp.workflows_dir)
    percentiles = [
        catalog.get(name).qos.percentile
        for target in exp.workflows
        for name in catalog.resolve(target).weights
    ]
    return max(percentiles, default=95.0)
