"""Validation of OpenFaaS request bodies (deploy, scale, delete) into testbed types."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from testbed.core.config import DEFAULT_MAX_REPLICAS, Limits
from testbed.core.errors import ConfigError
from testbed.core.host import usable_cores
from testbed.core.platform import FunctionSpec, FunctionStatus

__all__ = [
    "HANDLER_ANNOTATION",
    "MIN_MEMORY_MB",
    "NAMESPACE",
    "check_limits",
    "deploy_schema",
    "machine_memory_mb",
    "parse_delete",
    "parse_deploy",
    "parse_limits",
    "parse_scale",
    "resources_schema",
    "status_json",
]

HANDLER_ANNOTATION = "com.aquatope.handler"
NAMESPACE = "openfaas-fn"  # the one namespace this provider serves

MAX_INFLIGHT = 1024
MIN_MEMORY_MB = 16
"""The smallest memory limit the gateway accepts: a Python runner needs more to start."""


def machine_memory_mb() -> int:
    """Physical memory of the machine in MiB: the most a replica can be given."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 2**20


def check_limits(limits: Limits, *, where: str) -> Limits:
    """Refuse limits this machine cannot honour.

    CPU must lie in (0, machine cores] and memory in [``MIN_MEMORY_MB``, machine memory].

    Raises:
        ConfigError: one line naming ``where`` and the bound.
    """
    cores = usable_cores()  # the most a replica can be given
    if limits.cpu_cores is not None and limits.cpu_cores > cores:
        raise ConfigError(f"{where}.cpu: {limits.cpu_cores:g} exceeds this machine's {cores} cores")
    if limits.cpu_cores is not None and limits.cpu_cores < 0.01:
        raise ConfigError(f"{where}.cpu: {limits.cpu_cores:g} is below 0.01 cores (10m)")
    if limits.memory_mb is not None:
        total = machine_memory_mb()
        if limits.memory_mb < MIN_MEMORY_MB:
            raise ConfigError(
                f"{where}.memory: {limits.memory_mb} MiB is below the {MIN_MEMORY_MB} MiB floor"
            )
        if limits.memory_mb > total:
            raise ConfigError(
                f"{where}.memory: {limits.memory_mb} MiB exceeds this machine's {total} MiB"
            )
    return limits


def parse_limits(body: Any, *, where: str) -> Limits:
    """An OpenFaaS ``{"cpu": .., "memory": ..}`` object checked against this machine.

    Raises:
        ConfigError: malformed, non-finite or out of the machine's bounds.
    """
    if body is not None and not isinstance(body, dict):
        raise ConfigError(f"{where}: expected an object like {{'cpu': '0.5', 'memory': '128M'}}")
    return check_limits(Limits.from_openfaas(body, where=where), where=where)


class _Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory: StrictStr | StrictInt | None = None
    cpu: StrictStr | StrictInt | StrictFloat | None = None


class _Deploy(BaseModel):
    """OpenFaaS FunctionDeployment (fields we do not use are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    service: str
    image: str = ""
    envProcess: str | None = None
    envVars: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    limits: _Resources | None = None
    requests: _Resources | None = None
    namespace: str | None = None


class _Scale(BaseModel):
    model_config = ConfigDict(extra="allow")
    serviceName: str | None = None
    replicas: int = Field(ge=0)


class _Delete(BaseModel):
    model_config = ConfigDict(extra="allow")
    functionName: str


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` references inlined (OpenAPI 3.0 has no $defs)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


def deploy_schema() -> dict[str, Any]:
    """JSON schema of an OpenFaaS deploy body, as validated here."""
    return _inline(_Deploy.model_json_schema())


def resources_schema() -> dict[str, Any]:
    """JSON schema of a limits body (``{"cpu": "0.5", "memory": "256Mi"}``)."""
    return _inline(_Resources.model_json_schema())


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{loc}: {err['msg']}"


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConfigError("body: expected a JSON object")
    return body


def parse_deploy(
    body: Any, *, functions_dir: Path | None, max_replicas: int = DEFAULT_MAX_REPLICAS
) -> FunctionSpec:
    """Turn an OpenFaaS deploy body into a :class:`FunctionSpec`.

    The handler directory comes from the ``com.aquatope.handler`` annotation, else from
    ``functions_dir/<service>``.

    Args:
        body: the parsed JSON body.
        functions_dir: where ``<service>/handler.py`` is looked up without the annotation.
        max_replicas: the platform cap on ``com.openfaas.scale.max``.

    Raises:
        ConfigError: one line naming the bad field.
    """
    try:
        model = _Deploy.model_validate(_object(body))
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    from testbed.core.names import check_name

    check_name(model.service, what="service")
    dump = model.model_dump()
    limits = parse_limits(dump.get("limits"), where="limits")
    requests = Limits.from_openfaas(dump.get("requests"), where="requests")
    annotations = dict(model.annotations or {})
    handler = annotations.get(HANDLER_ANNOTATION)
    if not handler and functions_dir is not None:
        candidate = functions_dir / model.service
        if (candidate / "handler.py").is_file():
            handler = str(candidate)
    if not handler:
        raise ConfigError(
            f"service: no handler found for {model.service!r}; set annotation "
            f"{HANDLER_ANNOTATION} to a directory holding handler.py"
        )
    if not (Path(handler) / "handler.py").is_file():
        raise ConfigError(f"annotations.{HANDLER_ANNOTATION}: {handler} has no handler.py")
    annotations[HANDLER_ANNOTATION] = handler
    env = dict(model.envVars)
    for key, value in env.items():  # what execve cannot pass would fail every start
        if not key or "=" in key or "\x00" in key:
            raise ConfigError(f"envVars: {key!r} is not a variable name (empty, '=' or NUL)")
        if "\x00" in value:
            raise ConfigError(f"envVars.{key}: the value holds a NUL byte")
    try:
        max_inflight = int(env.get("max_inflight", "1"))
    except ValueError:
        raise ConfigError("envVars.max_inflight: must be an integer") from None
    if not 1 <= max_inflight <= MAX_INFLIGHT:
        raise ConfigError(f"envVars.max_inflight: must be 1..{MAX_INFLIGHT}, got {max_inflight}")
    spec = FunctionSpec(
        name=model.service,
        image=model.image,
        handler=handler,
        env=env,
        labels=dict(model.labels or {}),
        annotations=annotations,
        limits=limits,
        requests=requests,
        max_inflight=max_inflight,
    )
    if spec.scale_bounds.max > max_replicas:
        raise ConfigError(
            f"labels.com.openfaas.scale.max: {spec.scale_bounds.max} exceeds the platform cap "
            f"of {max_replicas} replicas per function"
        )
    return spec


def parse_scale(body: Any, name: str) -> int:
    """Replicas from a scale body; the function is the one named by the path."""
    try:
        model = _Scale.model_validate(_object(body))
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    # The path names the function (as in faas-netes); a differing serviceName is ignored.
    return model.replicas


def parse_delete(body: Any) -> str:
    try:
        return _Delete.model_validate(_object(body)).functionName
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def rfc3339(at_s: float) -> str:
    """Unix seconds as the RFC 3339 UTC text Go's ``time.Time`` reads, e.g. ``createdAt``."""
    from datetime import datetime

    return datetime.fromtimestamp(at_s, UTC).isoformat().replace("+00:00", "Z")


def status_json(status: FunctionStatus, *, created_at_s: float | None = None) -> dict[str, Any]:
    """OpenFaaS FunctionStatus JSON, with the testbed's extras under ``aquatope``.

    Args:
        created_at_s: when the function was deployed (Unix seconds), sent as ``createdAt``.
    """
    spec = status.spec
    out = {
        "name": status.name,
        "image": spec.image,
        "namespace": NAMESPACE,
        "invocationCount": status.invocation_count,
        "replicas": status.target_replicas,
        "availableReplicas": status.replicas_ready,
        "envProcess": "",
        "envVars": dict(spec.env),
        "labels": dict(spec.labels),
        "annotations": dict(spec.annotations),
        "limits": status.limits.to_openfaas() or None,
        "requests": spec.requests.to_openfaas() or None,
        "aquatope": {
            "startingReplicas": status.replicas_starting,
            "maxInflight": spec.max_inflight,
            "limitsEnforced": status.limits_enforced,
            "limitsDetail": status.limits_detail,
            "lastExit": status.last_exit,
            "replicas": [
                {
                    "id": r.id,
                    "state": r.state,
                    "address": r.address,
                    "startedAt": r.started_at,
                    "readyAt": r.ready_at,
                    "startupSeconds": r.startup_s,
                    "inflight": r.inflight,
                    "containerId": r.container_id,
                    "detail": r.detail,
                    "peakMemoryMB": r.peak_memory_mb,
                }
                for r in status.replicas
            ],
        },
    }
    if created_at_s is not None:
        out["createdAt"] = rfc3339(created_at_s)
    return out
