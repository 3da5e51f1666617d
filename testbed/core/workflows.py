"""Load workflow definitions (``functions/workflows/*.yaml``): DAGs with QoS targets, and mixes.

A workflow file::

    name: ml-pipeline
    qos: {percentile: 95, target_s: 2.5}
    stages:
      - name: image-processing
      - name: object-detection
        after: [image-processing]

``function`` defaults to the stage name. A mix file has ``mix: {workflow: weight, ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.core.errors import ConfigError
from testbed.core.names import check_name
from testbed.core.platform import QoS, Stage, Workflow, WorkflowMix
from testbed.core.yamlfile import read_yaml

__all__ = ["WorkflowCatalog", "default_workflows_dir", "load_workflows"]


class _QoS(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_s: float
    percentile: float = 95.0


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    function: str | None = None
    after: list[str] = Field(default_factory=list)


class _WorkflowFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    qos: _QoS | None = None
    stages: list[_Stage] | None = None
    mix: dict[str, float] | None = None


class WorkflowCatalog:
    """Every workflow and mix found in a directory."""

    def __init__(self, workflows: dict[str, Workflow], mixes: dict[str, WorkflowMix]) -> None:
        self.workflows = workflows
        self.mixes = mixes

    def get(self, name: str) -> Workflow:
        try:
            return self.workflows[name]
        except KeyError:
            raise ConfigError(
                f"unknown workflow {name!r}; known: {', '.join(sorted(self.workflows))}"
            ) from None

    def resolve(self, name: str) -> WorkflowMix:
        """A mix by name, or a one-workflow mix for a plain workflow."""
        if name in self.mixes:
            return self.mixes[name]
        self.get(name)
        return WorkflowMix(name=name, weights={name: 1.0})

    @property
    def functions(self) -> set[str]:
        return {f for w in self.workflows.values() for f in w.functions}


def default_workflows_dir() -> Path:
    """The workflows shipped in ``functions/workflows`` (found without importing ``functions``)."""
    import importlib.util

    spec = importlib.util.find_spec("functions")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the 'functions' package is not installed; pass a workflows directory")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "workflows"


def _load_one(path: Path) -> Workflow | WorkflowMix:
    raw: Any = read_yaml(path, what="workflow file")
    try:
        parsed = _WorkflowFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {loc}: {first['msg']}") from None
    try:
        check_name(parsed.name, what="workflow name")
        if parsed.mix is not None:
            if parsed.stages:
                raise ConfigError("a file has either 'stages' or 'mix', not both")
            return WorkflowMix(parsed.name, dict(parsed.mix), parsed.description)
        if parsed.qos is None or not parsed.stages:
            raise ConfigError("a workflow needs 'qos' and 'stages'")
        stages = tuple(
            Stage(
                name=check_name(s.name, what="stage name"),
                function=check_name(s.function or s.name, what="function name"),
                after=tuple(s.after),
            )
            for s in parsed.stages
        )
        qos = QoS(target_s=parsed.qos.target_s, percentile=parsed.qos.percentile)
        return Workflow(parsed.name, qos, stages, parsed.description)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_workflows(directory: str | Path | None = None) -> WorkflowCatalog:
    """Load every ``*.yaml`` in ``directory`` (default: the shipped workflows).

    Raises:
        ConfigError: a file is malformed, or a mix names an unknown workflow.
    """
    directory = Path(directory) if directory else default_workflows_dir()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such workflows directory")
    workflows: dict[str, Workflow] = {}
    mixes: dict[str, WorkflowMix] = {}
    for path in sorted(directory.glob("*.yaml")):
        item = _load_one(path)
        target = mixes if isinstance(item, WorkflowMix) else workflows
        if item.name in workflows or item.name in mixes:
            raise ConfigError(f"{path}: name {item.name!r} defined twice")
        target[item.name] = item  # type: ignore[assignment]
    for mix in mixes.values():
        for wf in mix.weights:
            if wf not in workflows:
                raise ConfigError(f"mix {mix.name!r} names unknown workflow {wf!r}")
    return WorkflowCatalog(workflows, mixes)
