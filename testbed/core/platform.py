"""The ``Platform`` protocol: the one seam every backend (local, docker, openfaas, sim) implements.

The scheduler daemon, the experiment runner and the CLI only ever talk to a ``Platform``.
All types here are plain frozen dataclasses so they can cross process and package
boundaries (the scheduler imports this module and nothing else from ``testbed``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from testbed.core.config import DEFAULT_MAX_INFLIGHT, Limits, ScaleBounds
from testbed.core.errors import ConfigError
from testbed.core.latency import WorkflowMetrics

__all__ = [
    "FunctionMetrics",
    "FunctionSpec",
    "FunctionStatus",
    "InvokeResult",
    "MetricsSnapshot",
    "Platform",
    "QoS",
    "ReplicaInfo",
    "ReplicaState",
    "Stage",
    "Workflow",
    "WorkflowMetrics",
    "WorkflowMix",
    "decode_output",
]

ReplicaState = Literal["starting", "ready", "stopping", "failed", "oom-killed"]

LABEL_SCALE_MIN = "com.openfaas.scale.min"
LABEL_SCALE_MAX = "com.openfaas.scale.max"
LABEL_SCALE_ON_DEMAND = "com.aquatope.scale-on-demand"


@dataclass(frozen=True)
class FunctionSpec:
    """What to deploy: one function, as in a ``stack.yml`` entry or an OpenFaaS deploy body.

    Args:
        name: function (service) name, DNS-label style.
        image: container image (docker/openfaas backends); the local backend ignores it.
        handler: path of the handler directory (holding ``handler.py``), for local/docker.
        env: environment variables for every replica (``envVars``).
        labels: OpenFaaS labels; ``com.openfaas.scale.min/max`` set the scale bounds.
        annotations: free-form annotations.
        limits: per-replica limits (enforced through cgroups where possible).
        requests: per-replica requests (recorded, used for cost when limits are unset).
        max_inflight: concurrent requests one replica accepts; the gateway queues the rest.
    """

    name: str
    image: str = ""
    handler: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    requests: Limits = field(default_factory=Limits)
    max_inflight: int = DEFAULT_MAX_INFLIGHT

    def __post_init__(self) -> None:
        from testbed.core.names import check_name

        check_name(self.name, what="function name")
        if self.max_inflight < 1:
            raise ConfigError(f"{self.name}: max_inflight must be >= 1, got {self.max_inflight}")
        self.scale_bounds  # noqa: B018 - validates the labels

    @functools.cached_property
    def scale_bounds(self) -> ScaleBounds:
        """Bounds from the ``com.openfaas.scale.min/max`` labels (parsed once)."""
        try:
            lo = int(self.labels.get(LABEL_SCALE_MIN, 0))
            hi = int(self.labels.get(LABEL_SCALE_MAX, ScaleBounds().max))
        except ValueError:
            raise ConfigError(f"{self.name}: scale labels must be integers") from None
        return ScaleBounds(min=lo, max=hi)

    @functools.cached_property
    def scale_on_demand(self) -> bool:
        """Label ``com.aquatope.scale-on-demand: "true"``: Lambda/OpenWhisk-style scale-out.

        A request that finds every replica busy (and not enough starting to absorb the
        queue) starts one more replica, up to ``scale.max``, and counts as a cold start; it
        stays in the FIFO queue and takes whichever slot frees first.
        Without it the gateway queues, as OpenFaaS does, and only policies add replicas.
        """
        return self.labels.get(LABEL_SCALE_ON_DEMAND, "false").strip().lower() == "true"


@dataclass(frozen=True)
class ReplicaInfo:
    """One running (or starting) instance of a function."""

    id: str
    state: ReplicaState
    address: str = ""
    started_at: float = 0.0
    ready_at: float | None = None
    startup_s: float | None = None
    inflight: int = 0
    container_id: str | None = None
    detail: str = ""
    peak_memory_mb: float | None = None  # peak resident memory so far, where it can be read


@dataclass(frozen=True)
class FunctionStatus:
    """The observable state of one deployed function.

    ``limits_detail`` says how limits are applied (e.g. advisory without cgroups);
    ``last_exit`` says why the last replica that died went (crash, OOM kill, failed start).
    """

    name: str
    spec: FunctionSpec
    target_replicas: int
    replicas_ready: int
    replicas_starting: int
    limits: Limits
    limits_enforced: bool
    invocation_count: int = 0
    replicas: tuple[ReplicaInfo, ...] = ()
    limits_detail: str = ""
    last_exit: str = ""


@dataclass(frozen=True)
class InvokeResult:
    """The answer to one function or workflow invocation."""

    status_code: int
    body: bytes
    headers: Mapping[str, str]
    cold_start: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> object:
        import json

        return json.loads(self.body)


@dataclass(frozen=True)
class FunctionMetrics:
    """Cumulative counters and current gauges for one function (since the gateway started).

    Counters are monotonic, so an observer gets per-interval figures by differencing
    two snapshots.
    """

    started: int = 0
    completed: int = 0
    errors: int = 0
    cold_starts: int = 0
    duration_sum_s: float = 0.0
    inflight: int = 0
    queued: int = 0
    replicas_ready: int = 0
    replicas_starting: int = 0


@dataclass(frozen=True)
class MetricsSnapshot:
    """Metrics of every function at one instant ``at_s`` (platform clock, seconds), and of
    every workflow the platform runs (end-to-end; empty where it runs none)."""

    at_s: float
    functions: Mapping[str, FunctionMetrics]
    workflows: Mapping[str, WorkflowMetrics] = field(default_factory=dict)


@runtime_checkable
class Platform(Protocol):
    """A FaaS platform the testbed can deploy to, scale, resize and invoke.

    Every backend passes ``tests/contract/test_platform.py``. Methods raise
    :class:`testbed.core.errors.PlatformError` subclasses, never third-party errors.
    """

    def deploy(self, spec: FunctionSpec) -> None:
        """Create the function, or update it in place when it exists."""
        ...

    def remove(self, name: str) -> None:
        """Delete the function and stop all its replicas."""
        ...

    def list(self) -> list[FunctionStatus]:
        """Status of every deployed function."""
        ...

    def status(self, name: str) -> FunctionStatus:
        """Status of one function. Raises ``FunctionNotFound``."""
        ...

    def scale(self, name: str, *, replicas: int) -> None:
        """Set the target number of replicas (0 scales to zero)."""
        ...

    def set_limits(self, name: str, limits: Limits) -> None:
        """Change per-replica limits, live where the backend can."""
        ...

    def invoke(
        self,
        name: str,
        payload: bytes = b"",
        *,
        workflow: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> InvokeResult:
        """Invoke a function (or, with ``workflow=True``, a workflow) synchronously."""
        ...

    def metrics(self) -> MetricsSnapshot:
        """Cumulative per-function counters and current gauges."""
        ...

    def close(self) -> None:
        """Release what this client opened. Idempotent."""
        ...


@dataclass(frozen=True)
class QoS:
    """End-to-end latency target: the ``percentile`` latency must stay <= ``target_s``."""

    target_s: float
    percentile: float = 95.0

    def __post_init__(self) -> None:
        if not self.target_s > 0:
            raise ConfigError(f"qos.target_s must be positive, got {self.target_s!r}")
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"qos.percentile must be in (0, 100], got {self.percentile!r}")


@dataclass(frozen=True)
class Stage:
    """One node of a workflow DAG: a call of ``function`` after every stage in ``after``."""

    name: str
    function: str
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    """A DAG of function calls with an end-to-end QoS target.

    Root stages receive the invocation's body. A stage with one predecessor receives that
    predecessor's output; a join receives a JSON object ``{stage name: output}``. The
    workflow's output is its single sink's output, or ``{sink name: output}``.
    """

    name: str
    qos: QoS
    stages: tuple[Stage, ...]
    description: str = ""

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if not names:
            raise ConfigError(f"workflow {self.name!r}: needs at least one stage")
        if len(set(names)) != len(names):
            raise ConfigError(f"workflow {self.name!r}: stage names must be unique")
        known = set(names)
        for stage in self.stages:
            for dep in stage.after:
                if dep not in known:
                    raise ConfigError(
                        f"workflow {self.name!r}: stage {stage.name!r} runs after unknown "
                        f"stage {dep!r}"
                    )
        self.topological_order()  # raises on cycles

    @property
    def functions(self) -> tuple[str, ...]:
        """Distinct functions the workflow calls, in stage order."""
        return tuple(dict.fromkeys(s.function for s in self.stages))

    def topological_order(self) -> list[Stage]:
        """Stages ordered so each comes after its dependencies. Raises on a cycle."""
        by_name = {s.name: s for s in self.stages}
        done: list[Stage] = []
        seen: set[str] = set()
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            if name in visiting:
                raise ConfigError(f"workflow {self.name!r}: cycle through stage {name!r}")
            visiting.add(name)
            for dep in by_name[name].after:
                visit(dep)
            visiting.discard(name)
            seen.add(name)
            done.append(by_name[name])

        for stage in self.stages:
            visit(stage.name)
        return done

    def critical_path_s(self, service_s: Mapping[str, float]) -> float | None:
        """The longest chain of stage service times (``service_s`` per function), or None
        when a function's time is unknown."""
        finish: dict[str, float] = {}
        for stage in self.topological_order():
            own = service_s.get(stage.function)
            if own is None:
                return None
            finish[stage.name] = own + max((finish[d] for d in stage.after), default=0.0)
        return max(finish.values())

    def successors(self, stage: str) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if stage in s.after)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if not s.after)

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if not self.successors(s.name))

    def stage_input(self, stage: Stage, body: bytes, outputs: Mapping[str, bytes]) -> bytes:
        """What ``stage`` receives: the one rule every platform and in-process runner uses.

        Args:
            stage: a stage of this workflow.
            body: the invocation's request body.
            outputs: raw outputs of the stages that already ran, by stage name.

        Returns:
            ``body`` for a root stage, the predecessor's output for a stage with one, and a
            JSON object ``{predecessor: output}`` for a join (outputs decoded as JSON, or kept
            as text when they are not JSON).
        """
        if not stage.after:
            return body
        if len(stage.after) == 1:
            return outputs[stage.after[0]]
        import json

        return json.dumps({dep: decode_output(outputs[dep]) for dep in stage.after}).encode()

    def result(self, outputs: Mapping[str, bytes]) -> object:
        """The workflow's output: its single sink's output, or ``{sink name: output}``."""
        sinks = self.sinks
        if len(sinks) == 1:
            return decode_output(outputs[sinks[0]])
        return {s: decode_output(outputs[s]) for s in sinks}


def decode_output(raw: bytes) -> object:
    """A stage's raw output as JSON, or as text when it is not JSON."""
    import json

    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return raw.decode(errors="replace")


@dataclass(frozen=True)
class WorkflowMix:
    """A request mix over several workflows (e.g. the social network's 20/40/40)."""

    name: str
    weights: Mapping[str, float]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.weights or any(not w > 0 for w in self.weights.values()):
            raise ConfigError(f"mix {self.name!r}: weights must be positive and non-empty")
