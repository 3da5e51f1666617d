"""The headline evaluation: every policy (knobs swept) × every trace kind × many seeds.

An evaluation file names a shared ``base`` experiment (backend, workflows, duration, the
training period as ``warmup_s``), the ``traces`` to compare on, the ``policies`` (each with
an optional ``sweep`` of one parameter, expanded into one label per value) and the number
of ``seeds``. A trace may carry a ``base`` of its own, whose keys replace the shared ones
for that trace (e.g. ``backend_options`` for a simulated host of another size). It expands
into one :class:`~testbed.experiment.spec.ExperimentSpec` per trace kind, whose runs are
*cells* ``(trace, policy label, seed)``. Cells run in parallel worker processes, each written
atomically by the one experiment runner (:func:`run_one`); a cell whose run directory is
complete is skipped, so an interrupted grid resumes where it stopped.

Layout of the output directory::

    OUT/evaluation.yaml                 the evaluation as run
    OUT/<trace>/<label>/seed-<n>/       one run (docs/results.md)
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing as mp
import os
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.core.atomic import atomic_write_text
from testbed.core.errors import ConfigError
from testbed.core.names import check_name
from testbed.core.yamlfile import read_yaml
from testbed.experiment.spec import ExperimentSpec, parse_spec

__all__ = [
    "Cell",
    "CellResult",
    "EvaluationSpec",
    "WorkLeft",
    "expected_seconds",
    "load_evaluation",
    "parse_evaluation",
    "run_evaluation",
    "run_seconds",
    "sweep_label",
]


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict, max_length=1)


class _Evaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    base: dict[str, Any]
    traces: dict[str, dict[str, Any]] = Field(min_length=1)
    policies: list[_Policy] = Field(min_length=1)
    seeds: int = Field(default=10, ge=1)


@dataclass(frozen=True)
class EvaluationSpec:
    """A validated evaluation: one experiment per trace kind, sharing policies and seeds.

    Attributes:
        name: the evaluation's name.
        experiments: trace name → the experiment run on it (policies already expanded).
        families: label → the family (the policy's label before the sweep) it belongs to.
        knobs: label → ``(parameter, value)`` for swept labels.
        source: the file it came from.
        raw: the parsed YAML.
    """

    name: str
    description: str
    experiments: Mapping[str, ExperimentSpec]
    families: Mapping[str, str]
    knobs: Mapping[str, tuple[str, Any]]
    source: Path | None
    raw: Mapping[str, Any]

    @property
    def seeds(self) -> tuple[int, ...]:
        return next(iter(self.experiments.values())).seeds


def sweep_label(family: str, param: str, value: Any) -> str:
    """The label (a directory name) of one point of a swept policy.

    ``("keep-alive", "window_s", 60)`` gives ``keep-alive-window-s-60`` and a decimal point
    becomes ``p`` (``idle-weight-0p01``).
    """
    text = f"{value:g}" if isinstance(value, float) else str(value)
    slug = f"{param}-{text}".replace("_", "-").replace(".", "p").replace("+", "").lower()
    return f"{family}-{slug}"


def parse_evaluation(raw: Any, *, source: Path | None = None) -> EvaluationSpec:
    """Validate an evaluation mapping (paths resolve against ``source``'s directory).

    Raises:
        ConfigError: ``"<file>: <field>: <problem>"`` for the first problem found.
    """
    where = str(source) if source else "evaluation"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an evaluation is a mapping (name, base, traces, policies)")
    try:
        ev = _Evaluation.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {field_name}: {first['msg']}") from None
    check_name(ev.name, what=f"{where}: name")
    policies: list[dict[str, Any]] = []
    families: dict[str, str] = {}
    knobs: dict[str, tuple[str, Any]] = {}
    for i, pol in enumerate(ev.policies):
        family = pol.label or pol.name
        if not pol.sweep:
            policies.append({"name": pol.name, "label": family, "params": dict(pol.params)})
            families[family] = family
            continue
        ((param, values),) = pol.sweep.items()
        if not values:
            raise ConfigError(f"{where}: policies.{i}.sweep.{param}: give at least one value")
        for value in values:
            label = sweep_label(family, param, value)
            params = {**pol.params, param: value}
            policies.append({"name": pol.name, "label": label, "params": params})
            families[label] = family
            knobs[label] = (param, value)
    experiments: dict[str, ExperimentSpec] = {}
    for trace_name, given in ev.traces.items():
        check_name(trace_name, what=f"{where}: traces.{trace_name}")
        trace = dict(given)
        overrides = trace.pop("base", None) or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{where}: traces.{trace_name}.base must be a mapping")
        body = {
            **ev.base,
            **overrides,
            "name": f"{ev.name}-{trace_name}",
            "trace": trace,
            "policies": policies,
            "seeds": list(range(ev.seeds)),
        }
        try:
            experiments[trace_name] = parse_spec(body, source=source)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in traces.{trace_name})") from None
    return EvaluationSpec(
        name=ev.name,
        description=ev.description,
        experiments=experiments,
        families=families,
        knobs=knobs,
        source=source,
        raw=raw,
    )


def load_evaluation(
    path: str | Path,
    *,
    seeds: int | None = None,
    traces: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    backend: str | None = None,
) -> EvaluationSpec:
    """Read an evaluation file, optionally narrowed (fewer seeds, some traces or families)
    or moved to another ``backend`` (its ``backend_options``, which belong to the file's
    backend, are dropped then: a live confirmation of a simulated grid).

    Raises:
        ConfigError: a missing or invalid file, or a filter that names nothing in it.
    """
    path = Path(path)
    raw = read_yaml(path, what="evaluation file")
    if isinstance(raw, dict):
        raw = dict(raw)
        if backend is not None:
            raw = _on_backend(raw, backend)
        if seeds is not None:
            raw["seeds"] = seeds
        if traces:
            unknown = sorted(set(traces) - set(raw.get("traces") or {}))
            if unknown:
                raise ConfigError(f"{path}: no trace(s) {', '.join(unknown)}")
            raw["traces"] = {k: v for k, v in raw["traces"].items() if k in traces}
        if families:
            kept = [_narrowed(p, set(families)) for p in raw.get("policies") or []]
            if not any(kept):
                raise ConfigError(f"{path}: no policy labelled {', '.join(families)}")
            raw["policies"] = [p for p in kept if p]
    return parse_evaluation(raw, source=path.resolve())


def _on_backend(raw: dict[str, Any], backend: str) -> dict[str, Any]:
    """``raw`` with every trace run on ``backend``: the base's backend replaced, and the
    backend options of the base and of each trace's own base dropped where they change."""
    base = raw.get("base")
    if not isinstance(base, Mapping):
        return raw  # the validation that follows names the problem
    if base.get("backend", "local") == backend:
        return raw
    out = {**raw, "base": {**_off_backend(base), "backend": backend}}
    traces = raw.get("traces")
    if isinstance(traces, Mapping):
        out["traces"] = {
            name: {**trace, "base": _off_backend(trace["base"])}
            if isinstance(trace, Mapping) and isinstance(trace.get("base"), Mapping)
            else trace
            for name, trace in traces.items()
        }
    return out


def _off_backend(base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` without the keys that belong to one backend (``backend``, its options)."""
    return {k: v for k, v in base.items() if k not in ("backend", "backend_options")}


def _narrowed(policy: Any, wanted: set[str]) -> dict[str, Any] | None:
    """``policy`` if its family is wanted, only the wanted values of its sweep, or None."""
    if not isinstance(policy, dict):
        return None
    family = str(policy.get("label") or policy.get("name"))
    if family in wanted:
        return policy
    sweep = policy.get("sweep")
    if not isinstance(sweep, dict) or len(sweep) != 1:
        return None
    ((param, values),) = sweep.items()
    if not isinstance(values, list):
        return None
    chosen = [v for v in values if sweep_label(family, str(param), v) in wanted]
    return {**policy, "sweep": {param: chosen}} if chosen else None


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    trace: str
    policy_index: int
    label: str
    seed: int

    def run_dir(self, out_dir: Path) -> Path:
        return out_dir / self.trace / self.label / f"seed-{self.seed}"


@dataclass(frozen=True)
class CellResult:
    """What became of a cell: ``ran`` false when a complete run was already there."""

    cell: Cell
    ran: bool
    error: str | None = None


def cells(spec: EvaluationSpec) -> Iterator[Cell]:
    """Every cell, seed-major so a partial grid already covers every policy and trace."""
    for seed in spec.seeds:
        for trace, exp in spec.experiments.items():
            for index, pol in enumerate(exp.policies):
                yield Cell(trace, index, pol.label, seed)


def is_complete(run_dir: Path) -> bool:
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("complete"))


def run_seconds(run_dir: Path) -> float | None:
    """Seconds of work a complete run took: the simulation's CPU time where its metadata
    has it (a run paused, or sharing its core, waited longer than it worked), else its wall
    time (``None``: not complete, or not timed)."""
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
        cpu = (meta.get("sim") or {}).get("cpu_s")
        took = float(cpu) if cpu is not None else meta["finished_unix_s"] - meta["started_unix_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return took if meta.get("complete") and took >= 0 else None


class _Timings:
    """Seconds of work per trace and policy label, learnt from complete runs' metadata."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.by_point: dict[tuple[str, str], list[float]] = {}

    def learn(self, cell: Cell) -> float | None:
        """Add what ``cell``'s run took, when it is complete and timed; return it (None: it
        is not)."""
        took = run_seconds(cell.run_dir(self.out_dir))
        if took is not None:
            self.by_point.setdefault((cell.trace, cell.label), []).append(took)
        return took

    def median(self, cell: Cell) -> float | None:
        """The median time of ``cell``'s trace and policy so far (None: never timed)."""
        took = self.by_point.get((cell.trace, cell.label))
        return statistics.median(took) if took else None


def expected_seconds(grid: Sequence[Cell], out_dir: Path) -> dict[Cell, float]:
    """How long each cell should take, from the complete runs already in ``out_dir``: the
    median of what its trace and policy took in other seeds, else of what its policy took
    on other traces, else of every run timed, else one second (so a fresh grid's progress
    counts cells). Medians, as a run that was paused (or shared its core) took longer than
    its work. Weighs a progress bar by work instead of by cells."""
    estimate = WorkLeft(grid, out_dir)._estimator()
    return {cell: estimate(cell.trace, cell.label) for cell in grid}


class WorkLeft:
    """Seconds of work done and left in a grid, for a progress bar's total and ETA.

    Each cell's share is :func:`expected_seconds`' estimate, learnt again as cells finish:
    on a fresh grid the first seed's runs say how much longer a pre-warmer's run takes than
    a baseline's, and the cells still to come are weighed by that from then on."""

    def __init__(self, grid: Sequence[Cell], out_dir: Path) -> None:
        self._timings = _Timings(out_dir)
        for cell in grid:
            self._timings.learn(cell)
        self._left: dict[tuple[str, str], int] = {}
        for cell in grid:
            key = (cell.trace, cell.label)
            self._left[key] = self._left.get(key, 0) + 1
        self.done_s = 0.0

    def expected(self, cell: Cell) -> float:
        """The cell's estimate: its point's median, else its policy's on other traces, else
        every run's, else one second."""
        return self._estimator()(cell.trace, cell.label)

    def _estimator(self) -> Callable[[str, str], float]:
        """The estimate of a (trace, label), with the fallbacks' medians computed once."""
        by_point = self._timings.by_point
        by_label: dict[str, list[float]] = {}
        for (_, label), timed in by_point.items():
            by_label.setdefault(label, []).extend(timed)
        every = [t for timed in by_label.values() for t in timed]
        label_median = {label: statistics.median(timed) for label, timed in by_label.items()}
        fallback = statistics.median(every) if every else 1.0

        def estimate(trace: str, label: str) -> float:
            timed = by_point.get((trace, label))
            if timed:
                return statistics.median(timed)
            return label_median.get(label, fallback)

        return estimate

    def finished(self, cell: Cell, *, ran: bool) -> None:
        """``cell`` is over: its work counts as done when it ran (what it took, learnt for
        the cells to come), and as nothing when a complete run was already there."""
        key = (cell.trace, cell.label)
        self._left[key] = max(0, self._left.get(key, 0) - 1)
        if not ran:
            return
        took = self._timings.learn(cell)
        # failed, or not timed: what it was expected to take
        self.done_s += took if took is not None else self.expected(cell)

    @property
    def left_s(self) -> float:
        """Estimated seconds of the cells not finished yet."""
        estimate = self._estimator()
        return sum(n * estimate(*key) for key, n in self._left.items() if n)

    def eta_s(self, elapsed_s: float) -> float | None:
        """Wall seconds left, at the pace of the work done in ``elapsed_s`` wall seconds
        (workers in parallel included); None before any work is done."""
        if self.done_s <= 0 or elapsed_s <= 0:
            return None
        return self.left_s * elapsed_s / self.done_s


class _CellQueue:
    """Cells in the order they are handed to workers: the lowest seed left first (a partial
    grid covers every policy and trace), and within a seed the cell whose trace and label
    took longest in earlier seeds (median) first, cells never timed before all others (in
    grid order). Longest first keeps every worker busy to the end of the grid instead of
    one finishing a long cell alone."""

    def __init__(self, todo: Sequence[Cell], out_dir: Path, timed: Sequence[Cell]) -> None:
        self._left = list(todo)
        self._timings = _Timings(out_dir)
        for cell in timed:
            self.timed(cell)

    def timed(self, cell: Cell) -> None:
        """Learn how long ``cell`` took (from its run's metadata)."""
        self._timings.learn(cell)

    def _expected(self, cell: Cell) -> float:
        took = self._timings.median(cell)
        return math.inf if took is None else took

    def pop(self) -> Cell | None:
        if not self._left:
            return None
        seed = min(cell.seed for cell in self._left)
        first = min(
            (i for i, cell in enumerate(self._left) if cell.seed == seed),
            key=lambda i: -self._expected(self._left[i]),
        )
        return self._left.pop(first)


@functools.lru_cache(maxsize=16)
def _prepared(source: str | None, raw_json: str, trace: str) -> Any:
    from testbed.experiment.run import prepare

    spec = parse_evaluation(json.loads(raw_json), source=Path(source) if source else None)
    return prepare(spec.experiments[trace])


def _run_cell(source: str | None, raw_json: str, cell: Cell, out_dir: str) -> CellResult:
    """Worker entry: one cell, in a process of its own (torch threads kept to one)."""
    from testbed.experiment.run import run_one

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    prep = _prepared(source, raw_json, cell.trace)
    try:
        run_one(prep, Path(out_dir) / cell.trace, cell.policy_index, cell.seed)
    except Exception as exc:  # reported per cell; the grid goes on
        return CellResult(cell, ran=True, error=f"{type(exc).__name__}: {exc}")
    return CellResult(cell, ran=True)


def run_evaluation(
    spec: EvaluationSpec,
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    on_cell_done: Callable[[CellResult, int, int], None] | None = None,
    fresh: bool = False,
) -> list[CellResult]:
    """Run every cell not yet complete, ``jobs`` at a time (default: the core count).

    Args:
        spec: the evaluation.
        out_dir: where runs go (``<trace>/<label>/seed-<n>``); may hold an earlier partial grid.
        jobs: worker processes.
        on_cell_done: ``(result, done, total)`` after each cell, skipped ones included.
        fresh: run every cell again, replacing complete runs (they may be from older code).

    Returns:
        One result per cell, in completion order.

    Raises:
        ConfigError: a bad spec (before anything runs: each trace's experiment is prepared).
    """
    from testbed.experiment.run import prepare

    for exp in spec.experiments.values():
        prepare(exp)  # fail on a bad policy or workflow before any worker starts
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.yaml", yaml.safe_dump(dict(spec.raw), sort_keys=False))
    todo: list[Cell] = []
    done: list[Cell] = []
    results: list[CellResult] = []
    all_cells = list(cells(spec))
    total = len(all_cells)
    for cell in all_cells:
        if not fresh and is_complete(cell.run_dir(out)):
            done.append(cell)
            results.append(CellResult(cell, ran=False))
            if on_cell_done is not None:
                on_cell_done(results[-1], len(results), total)
        else:
            todo.append(cell)
    if not todo:
        return results
    source = str(spec.source) if spec.source else None
    raw_json = json.dumps(dict(spec.raw), default=str)
    queue = _CellQueue(todo, out, timed=done)
    if any(exp.backend != "sim" for exp in spec.experiments.values()):
        # live runs share this machine: one at a time, in this process (each starts its
        # own gateway, replicas and load generator)
        while (live := queue.pop()) is not None:
            results.append(_run_cell(source, raw_json, live, str(out)))
            queue.timed(live)
            if on_cell_done is not None:
                on_cell_done(results[-1], len(results), total)
        return results
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: set[Future[CellResult]] = set()
        while len(pending) < workers * 2 and (first := queue.pop()) is not None:
            pending.add(pool.submit(_run_cell, source, raw_json, first, str(out)))
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                results.append(future.result())
                queue.timed(results[-1].cell)
                if on_cell_done is not None:
                    on_cell_done(results[-1], len(results), total)
                nxt = queue.pop()
                if nxt is not None:
                    pending.add(pool.submit(_run_cell, source, raw_json, nxt, str(out)))
    return results
