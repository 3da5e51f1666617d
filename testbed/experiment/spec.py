"""The one loader of experiment configs: YAML in, a validated :class:`ExperimentSpec` out.

An experiment file (paths are relative to the file's directory)::

    name: demo
    backend: local                  # local | docker | openfaas | sim
    stack: ../stack.yml
    workflows: [ml-pipeline, social-network]   # workflows or mixes to drive
    trace:
      kind: bursty                  # a synthetic generator, or `file: trace.csv`
      minutes: 8                    # generator length (per-minute counts)
      compress: 8                   # play 8 trace minutes in 1 minute
      options: {rate_per_min: 20, on_min: 1, off_min: 2}
    duration_s: 60
    warmup_s: 10
    seeds: [1]                      # or `repetitions: 3` (seeds 0, 1, 2)
    policies:
      - name: always-on
        params: {min_replicas: 1}
      - name: keepalive-knative
        label: scale-to-zero

Every error is one :class:`ConfigError` line naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from testbed.core.errors import ConfigError
from testbed.core.names import check_name
from testbed.core.yamlfile import read_yaml_with_node

__all__ = ["ExperimentSpec", "PolicySpec", "TraceSpec", "load_spec", "parse_spec"]

Backend = Literal["local", "docker", "openfaas", "sim"]


@dataclass(frozen=True)
class PolicySpec:
    """One policy to compare: registry ``name``, its ``params`` and a unique ``label``."""

    name: str
    label: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceSpec:
    """Where the arrivals come from.

    Attributes:
        kind: synthetic generator (``bursty``, ``diurnal``, ``flash-crowd``, ``azure-like``),
            or ``None`` when ``file`` is given.
        file: an Azure 2019 per-minute counts CSV (absolute path).
        minutes: generator length in minutes.
        functions: trace functions to generate/select (default: one per workflow).
        compress: time compression factor (trace minutes per real minute).
        rate_scale: multiply the arrival rate by this.
        options: the generator's keyword options.
        spread: how arrivals are placed inside a minute (``poisson`` or ``even``).
    """

    kind: str | None = "bursty"
    file: Path | None = None
    minutes: int = 10
    functions: int | None = None
    compress: float = 1.0
    rate_scale: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)
    spread: str = "poisson"


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment: what to run, on what, for how long, how many times.

    Attributes:
        name: experiment name (results are labelled with it).
        backend: platform backend; ``backend_options`` go to ``testbed.backends.connect``.
        stack: the ``stack.yml`` holding the functions.
        workflows_dir: workflow definitions (``None`` = the shipped ones).
        workflows: workflows or mixes the trace drives.
        trace: the arrivals.
        duration_s: length of the replayed window (seconds of the compressed trace).
        warmup_s: leading seconds excluded from metrics.
        seeds: one repetition per seed; the same seed gives every policy the same arrivals.
        policies: the policies compared, in table order.
        tick_s: scheduler decision interval.
        sample_s: resource-timeline sampling interval (at most 1 s).
        drain_s: longest wait for in-flight requests after the trace ends.
        settle_s: seconds the scheduler runs on the fresh platform before the trace starts
            (time to reach the policy's initial state, e.g. always-on's warm replica).
        loadgen: extra keyword options for ``loadgen.replay``.
        decisions: what each line of ``decisions.jsonl`` lists: the functions whose
            decision ``changes`` (default), or ``every`` function every tick (with the
            policy's reasons: to trace why two runs decided differently).
        source: the file the spec came from (``None`` if built in code).
        raw: the parsed YAML (saved into each run's ``meta.json``).
    """

    name: str
    backend: Backend
    stack: Path
    workflows: tuple[str, ...]
    trace: TraceSpec
    duration_s: float
    policies: tuple[PolicySpec, ...]
    seeds: tuple[int, ...] = (0,)
    warmup_s: float = 0.0
    workflows_dir: Path | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    tick_s: float = 1.0
    sample_s: float = 1.0
    drain_s: float = 30.0
    settle_s: float = 5.0
    loadgen: Mapping[str, Any] = field(default_factory=dict)
    decisions: Literal["changes", "every"] = "changes"
    description: str = ""
    source: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class _Trace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = None
    file: str | None = None
    minutes: int = Field(default=10, ge=1)
    functions: int | None = Field(default=None, ge=1)
    compress: float = Field(default=1.0, gt=0)
    rate_scale: float = Field(default=1.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    spread: Literal["poisson", "even"] = "poisson"

    @model_validator(mode="after")
    def _one_source(self) -> _Trace:
        if (self.kind is None) == (self.file is None):
            raise ValueError("give exactly one of 'kind' (a generator) or 'file'")
        return self


class _Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    backend: Backend = "local"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    stack: str = "stack.yml"
    workflows_dir: str | None = None
    workflows: list[str] = Field(min_length=1)
    trace: _Trace
    duration_s: float = Field(gt=0)
    warmup_s: float = Field(default=0.0, ge=0)
    seeds: list[int] | None = None
    repetitions: int | None = Field(default=None, ge=1)
    policies: list[_Policy] = Field(min_length=1)
    tick_s: float = Field(default=1.0, gt=0)
    sample_s: float = Field(default=1.0, gt=0, le=1.0)
    drain_s: float = Field(default=30.0, ge=0)
    settle_s: float = Field(default=5.0, ge=0)
    loadgen: dict[str, Any] = Field(default_factory=dict)
    decisions: Literal["changes", "every"] = "changes"

    @model_validator(mode="after")
    def _check(self) -> _Experiment:
        if self.seeds is not None and self.repetitions is not None:
            raise ValueError("give 'seeds' or 'repetitions', not both")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("'seeds' must be a non-empty list of distinct integers")
        if self.warmup_s >= self.duration_s:
            raise ValueError("'warmup_s' must be shorter than 'duration_s'")
        return self


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if getattr(k, "value", None) == key]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def parse_spec(
    raw: Any, *, source: Path | None = None, node: yaml.Node | None = None
) -> ExperimentSpec:
    """Validate a parsed config mapping (paths resolved against ``source``'s directory).

    Raises:
        ConfigError: ``"<file>: line N: <field>: <problem>"``.
    """
    where = f"{source}" if source else "experiment"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an experiment config is a mapping (name, workflows, ...)")
    try:
        exp = _Experiment.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        line = _line_of(node, loc)
        at = f" line {line}:" if line else ""
        field_name = ".".join(str(p) for p in loc) or "(top level)"
        raise ConfigError(f"{where}:{at} {field_name}: {first['msg']}") from None

    def fail(field_name: str, msg: str) -> ConfigError:
        line = _line_of(node, tuple(int(p) if p.isdigit() else p for p in field_name.split(".")))
        at = f" line {line}:" if line else ""
        return ConfigError(f"{where}:{at} {field_name}: {msg}")

    try:
        check_name(exp.name, what="name")
    except ConfigError as err:
        raise fail("name", str(err)) from None
    base = source.parent if source else Path.cwd()
    labels: list[str] = []
    policies = []
    for i, pol in enumerate(exp.policies):
        label = pol.label or pol.name
        try:
            check_name(label, what="label")
        except ConfigError as err:
            raise fail(f"policies.{i}.label", str(err)) from None
        if label in labels:
            raise fail(f"policies.{i}.label", f"label {label!r} used twice (set 'label')")
        labels.append(label)
        policies.append(PolicySpec(name=pol.name, label=label, params=dict(pol.params)))
    if exp.repetitions is not None:
        seeds = tuple(range(exp.repetitions))
    else:
        seeds = tuple(exp.seeds or (0,))
    trace_file = _resolve(base, exp.trace.file) if exp.trace.file else None
    if trace_file is not None and not trace_file.is_file():
        raise fail("trace.file", f"no such trace file {trace_file}")
    stack = _resolve(base, exp.stack)
    if exp.backend != "sim" and not stack.is_file():
        raise fail("stack", f"no such stack file {stack}")
    workflows_dir = _resolve(base, exp.workflows_dir) if exp.workflows_dir else None
    if workflows_dir is not None and not workflows_dir.is_dir():
        raise fail("workflows_dir", f"no such directory {workflows_dir}")
    return ExperimentSpec(
        name=exp.name,
        description=exp.description,
        backend=exp.backend,
        backend_options=dict(exp.backend_options),
        stack=stack,
        workflows_dir=workflows_dir,
        workflows=tuple(exp.workflows),
        trace=TraceSpec(
            kind=exp.trace.kind,
            file=trace_file,
            minutes=exp.trace.minutes,
            functions=exp.trace.functions,
            compress=exp.trace.compress,
            rate_scale=exp.trace.rate_scale,
            options=dict(exp.trace.options),
            spread=exp.trace.spread,
        ),
        duration_s=exp.duration_s,
        warmup_s=exp.warmup_s,
        seeds=seeds,
        policies=tuple(policies),
        tick_s=exp.tick_s,
        sample_s=exp.sample_s,
        drain_s=exp.drain_s,
        settle_s=exp.settle_s,
        loadgen=dict(exp.loadgen),
        decisions=exp.decisions,
        source=source,
        raw=raw,
    )


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment YAML file.

    Raises:
        ConfigError: missing file, invalid YAML, or a field that fails validation (the
            message names the file, line and field).
    """
    path = Path(path)
    raw, node = read_yaml_with_node(path, what="experiment file")
    return parse_spec(raw, source=path.resolve(), node=node)
