"""Validation of OpenFaaS request bodies (deploy, scale, delete) into testbed types."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.core.config import Limits
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec, FunctionStatus

__all__ = [
    "HANDLER_ANNOTATION",
    "NAMESPACE",
    "deploy_schema",
    "parse_delete",
    "parse_deploy",
    "parse_scale",
    "resources_schema",
    "status_json",
]

HANDLER_ANNOTATION = "com.aquatope.handler"
NAMESPACE = "openfaas-fn"  # the one namespace this provider serves


class _Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory: str | int | None = None
    cpu: str | int | float | None = None


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


def parse_deploy(body: Any, *, functions_dir: Path | None) -> FunctionSpec:
    """Turn an OpenFaaS deploy body into a :class:`FunctionSpec`.

    The handler directory comes from the ``com.aquatope.handler`` annotation, else from
    ``functions_dir/<service>``.

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
    limits = Limits.from_openfaas(dump.get("limits"), where="limits")
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
    try:
        max_inflight = int(env.get("max_inflight", "1"))
    except ValueError:
        raise ConfigError("envVars.max_inflight: must be an integer") from None
    return FunctionSpec(
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
                }
                for r in status.replicas
            ],
        },
    }
    if created_at_s is not None:
        out["createdAt"] = rfc3339(created_at_s)
    return out
