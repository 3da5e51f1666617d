"""``aquatope configure``: find the cheapest per-function CPU/memory that meets the QoS.

Runs one configurator (Aquatope's safe BO by default, or a baseline) against an evaluator:
live load runs on the ``local`` backend, the simulator (``sim``), or a ``synthetic`` problem
with a known optimum. Prints every trial as it finishes, then the chosen configuration.
A QoS target that even the all-max configuration misses ends with exit code 1.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from testbed.cli._app import App, pass_app
from testbed.core.atomic import atomic_write_json
from testbed.core.errors import TestbedError
from testbed.core.platform import QoS, Workflow

if TYPE_CHECKING:
    from scheduler.configure.evaluate import Evaluator
    from scheduler.configure.space import SearchSpace

__all__ = ["configure"]


@click.command()
@click.option("--workflow", "workflow_name", required=True, help="Workflow to size.")
@click.option(
    "--backend",
    type=click.Choice(["local", "sim", "synthetic"]),
    default="local",
    show_default=True,
    help="local: live load runs; sim: the simulator; synthetic: a model with a known optimum.",
)
@click.option("--budget", type=click.IntRange(min=1), default=30, show_default=True)
@click.option(
    "--method",
    type=click.Choice(["aquatope", "cherrypick", "power-tuning", "random"]),
    default="aquatope",
    show_default=True,
)
@click.option(
    "--qos",
    "qos_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Override the workflow's QoS target (seconds).",
)
@click.option(
    "--rate",
    "rate_rps",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Request rate of each measurement run (req/s).",
)
@click.option(
    "--requests",
    type=click.IntRange(min=5),
    default=60,
    show_default=True,
    help="Requests per measurement run.",
)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--machine-cores",
    type=float,
    default=None,
    help="CPU cap of the search space (default: this machine's cores).",
)
@click.option(
    "--stack", "stack_path", default="stack.yml", show_default=True, type=click.Path(dir_okay=False)
)
@click.option("--workflows-dir", type=click.Path(file_okay=False), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the result as JSON here.",
)
@pass_app
def configure(
    app: App,
    workflow_name: str,
    backend: str,
    budget: int,
    method: str,
    qos_s: float | None,
    rate_rps: float,
    requests: int,
    replicas: int,
    machine_cores: float | None,
    stack_path: str,
    workflows_dir: str | None,
    seed: int,
    out_path: str | None,
) -> None:
    """Optimise per-function CPU/memory so the workflow meets its QoS at minimum cost."""
    from rich.console import Console

    from scheduler.configure import QoSUnreachable, make_configurator, qos_constraint, run_search

    console = Console()
    try:
        target = _sizing_target(
            app,
            workflow_name,
            backend,
            qos_s=qos_s,
            rate_rps=rate_rps,
            requests=requests,
            replicas=replicas,
            machine_cores=machine_cores,
            stack_path=stack_path,
            workflows_dir=workflows_dir,
            seed=seed,
        )
        workflow, space, evaluator = target.workflow, target.space, target.evaluator
        qos_target = workflow.qos.target_s
        constraints = [qos_constraint(qos_target, workflow.qos.percentile)]
        configurator = make_configurator(method, space, constraints, seed=seed, workflow=workflow)
        console.print(
            f"[bold]configure[/bold] {workflow.name}: {len(space.functions)} functions, "
            f"{space.n_dims} dims, QoS p{workflow.qos.percentile:g} <= {qos_target:g} s, "
            f"method {method}, budget {budget}, evaluator {evaluator.name}"
        )
        result = _run_with_progress(
            console, run_search, configurator, evaluator, space, constraints, budget
        )
    except (QoSUnreachable, TestbedError) as exc:
        raise click.ClickException(str(exc)) from None
    _print_result(console, result, qos_target)
    if out_path:
        atomic_write_json(Path(out_path), _result_json(result, workflow.name, method, qos_target))
        console.print(f"wrote {out_path}")
    if result.best is None:
        raise click.ClickException(
            f"no configuration met the QoS ({qos_target:g} s) in {result.evaluations} trials"
        )


@dataclass(frozen=True)
class SizingTarget:
    """What ``configure`` sizes: the workflow (its QoS final), the search space, the evaluator."""

    workflow: Workflow
    space: SearchSpace
    evaluator: Evaluator


def _sizing_target(
    app: App,
    workflow_name: str,
    backend: str,
    *,
    qos_s: float | None,
    rate_rps: float,
    requests: int,
    replicas: int,
    machine_cores: float | None,
    stack_path: str,
    workflows_dir: str | None,
    seed: int,
) -> SizingTarget:
    """Build the evaluator for ``backend``; a platform it opens closes with the command."""
    from scheduler.configure.evaluate import LiveEvaluator, ProblemEvaluator, SimEvaluator
    from scheduler.configure.space import SearchSpace

    if backend == "synthetic":
        from scheduler.problems import problem_by_name

        try:
            problem = problem_by_name(workflow_name)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="'--workflow'") from None
        if qos_s is not None:
            problem = replace(problem, qos_target_s=qos_s, _cache={})
        return SizingTarget(
            problem.workflow(), problem.space(), ProblemEvaluator(problem, seed=seed)
        )

    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows

    catalog = load_workflows(workflows_dir)
    workflow = catalog.get(workflow_name)
    if qos_s is not None:
        workflow = replace(workflow, qos=QoS(target_s=qos_s, percentile=workflow.qos.percentile))
    stack = load_stack(stack_path)
    specs = [stack[f] for f in workflow.functions]
    cores = machine_cores if machine_cores is not None else float(os.cpu_count() or 1)
    need = {s.name: s.requests.memory_mb or 128 for s in specs}
    space = SearchSpace.for_functions(workflow.functions, machine_cores=cores, memory_need_mb=need)
    if backend == "sim":
        platform = app.open_platform("sim", seed=seed, workflows=catalog)
    else:
        options: dict[str, Any] = {"state_dir": str(app.home)}
        if workflows_dir:
            options["workflows_dir"] = workflows_dir
        platform = app.open_platform(backend, **options)
    for spec in specs:
        platform.deploy(spec)
    evaluator: Evaluator
    if backend == "sim":
        evaluator = SimEvaluator(
            platform,
            workflow,
            rate_rps=rate_rps,
            requests=max(requests, 100),
            replicas=replicas,
            seed=seed,
        )
    else:
        from functions.workloads import make_payload

        try:
            payload = make_payload(workflow.name, random.Random(seed))
        except KeyError:
            payload = b""
        evaluator = LiveEvaluator(
            platform,
            workflow,
            rate_rps=rate_rps,
            requests=requests,
            replicas=replicas,
            payload=payload,
            seed=seed,
            name=backend,
        )
    return SizingTarget(workflow, space, evaluator)


def _run_with_progress(
    console: Any,
    run_search: Any,
    configurator: Any,
    evaluator: Any,
    space: Any,
    constraints: Any,
    budget: int,
) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from scheduler.configure import is_feasible

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("evaluating", total=budget)
        best: list[float] = []

        def on_trial(i: int, sample: Any) -> None:
            ok = is_feasible(sample, constraints)
            if ok:
                best.append(sample.cost_usd)
            mark = "[green]ok[/green]" if ok else "[red]QoS miss[/red]"
            progress.console.print(
                f"  trial {i:>3} {sample.source:<8} latency {sample.latency_s:8.4f} s  "
                f"${sample.cost_usd * 1e6:9.3f} per 1M inv  {mark}"
            )
            progress.update(
                task,
                completed=i,
                description=f"best ${min(best) * 1e6:.3f}/1M" if best else "no feasible yet",
            )

        return run_search(
            configurator,
            evaluator.evaluate,
            space=space,
            constraints=constraints,
            budget=budget,
            on_trial=on_trial,
        )


def _print_result(console: Any, result: Any, qos_target: float) -> None:
    from rich.table import Table

    from scheduler.configure import is_feasible

    table = Table(title=f"trials ({result.method})")
    for col in ("#", "source", "configuration", "p-latency s", "cost $/1M inv", "QoS"):
        table.add_column(col)
    for i, s in enumerate(result.trials, 1):
        table.add_row(
            str(i),
            s.source,
            str(s.config),
            f"{s.latency_s:.4f}",
            f"{s.cost_usd * 1e6:.3f}",
            "ok" if is_feasible(s, result.constraints) else "miss",
        )
    console.print(table)
    console.print(
        f"stopped: {result.stop_reason}; {result.evaluations} evaluations, "
        f"{result.infeasible_trials} violated the QoS"
    )
    if result.best is not None:
        b = result.best
        console.print("[bold]chosen configuration[/bold]")
        for name, cfg in b.config.items():
            console.print(f"  {name}: {cfg.cpu_cores:g} cores, {cfg.memory_mb} MB")
        first = result.trials[0] if result.trials else None
        saving = f", {1 - b.cost_usd / first.cost_usd:.0%} cheaper than all-max" if first else ""
        console.print(
            f"  latency {b.latency_s:.4f} s (target {qos_target:g} s), "
            f"cost ${b.cost_usd * 1e6:.3f} per 1M invocations{saving}"
        )


def _result_json(result: Any, workflow: str, method: str, qos_target: float) -> dict[str, Any]:
    def sample(s: Any) -> dict[str, Any]:
        return {
            "config": s.config.to_json(),
            "cost_usd": s.cost_usd,
            "latency_s": s.latency_s,
            "noise_s": s.measurement.noise_s,
            "failed": s.measurement.failed,
            "source": s.source,
            "detail": s.measurement.detail,
        }

    return {
        "workflow": workflow,
        "method": method,
        "qos_target_s": qos_target,
        "stop_reason": result.stop_reason,
        "infeasible_trials": result.infeasible_trials,
        "best": sample(result.best) if result.best else None,
        "trials": [sample(s) for s in result.trials],
    }
