"""``OpenFaaSPlatform``: a :class:`~testbed.core.platform.Platform` over the OpenFaaS REST API.

It talks to a real OpenFaaS gateway (k3d/Kubernetes, faasd) or to the testbed's own gateway,
which serves the same API. httpx errors and HTTP status codes are translated into the
testbed's exceptions here and nowhere else.
"""

from __future__ import annotations

import builtins
import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from testbed.core.config import Limits
from testbed.core.errors import (
    BackendUnavailable,
    ConfigError,
    DeployError,
    FunctionNotFound,
    InvocationError,
    PlatformError,
)
from testbed.core.latency import WORKFLOW_LATENCY_BUCKETS_S, WorkflowMetrics
from testbed.core.platform import (
    FunctionMetrics,
    FunctionSpec,
    FunctionStatus,
    InvokeResult,
    MetricsSnapshot,
    ReplicaInfo,
)

__all__ = ["OpenFaaSPlatform", "parse_metrics"]

HANDLER_ANNOTATION = "com.aquatope.handler"


@contextmanager
def _translate(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise InvocationError(f"{url}: timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise BackendUnavailable(
            f"gateway at {url} does not answer ({type(exc).__name__}); is it running? "
            "Start one with `aquatope up`"
        ) from None


def _deploy_body(spec: FunctionSpec) -> dict[str, Any]:
    annotations = dict(spec.annotations)
    if spec.handler:
        annotations.setdefault(HANDLER_ANNOTATION, spec.handler)
    env = dict(spec.env)
    env.setdefault("max_inflight", str(spec.max_inflight))
    body: dict[str, Any] = {
        "service": spec.name,
        "image": spec.image or f"aquatope/{spec.name}:latest",
        "envVars": env,
        "labels": dict(spec.labels),
        "annotations": annotations,
    }
    if spec.limits.to_openfaas():
        body["limits"] = spec.limits.to_openfaas()
    if spec.requests.to_openfaas():
        body["requests"] = spec.requests.to_openfaas()
    return body


def _spec_from_status(data: Mapping[str, Any]) -> FunctionSpec:
    env = {str(k): str(v) for k, v in (data.get("envVars") or {}).items()}
    annotations = {str(k): str(v) for k, v in (data.get("annotations") or {}).items()}
    extra = data.get("aquatope") or {}
    max_inflight = int(extra.get("maxInflight") or env.get("max_inflight") or 1)
    return FunctionSpec(
        name=data["name"],
        image=data.get("image") or "",
        handler=annotations.get(HANDLER_ANNOTATION, ""),
        env=env,
        labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        annotations=annotations,
        limits=Limits.from_openfaas(data.get("limits")),
        requests=Limits.from_openfaas(data.get("requests")),
        max_inflight=max_inflight,
    )


def _status_from_json(data: Mapping[str, Any]) -> FunctionStatus:
    extra = data.get("aquatope") or {}
    spec = _spec_from_status(data)
    replicas = tuple(
        ReplicaInfo(
            id=r["id"],
            state=r["state"],
            address=r.get("address") or "",
            started_at=float(r.get("startedAt") or 0.0),
            ready_at=r.get("readyAt"),
            startup_s=r.get("startupSeconds"),
            inflight=int(r.get("inflight") or 0),
            container_id=r.get("containerId"),
            detail=r.get("detail") or "",
            peak_memory_mb=r.get("peakMemoryMB"),
        )
        for r in extra.get("replicas", [])
    )
    available = int(data.get("availableReplicas") or 0)
    return FunctionStatus(
        name=data["name"],
        spec=spec,
        target_replicas=int(data.get("replicas") or 0),
        replicas_ready=available,
        replicas_starting=int(
            extra.get("startingReplicas", max(0, int(data.get("replicas") or 0) - available))
        ),
        limits=spec.limits,
        limits_enforced=bool(extra.get("limitsEnforced", True)),
        invocation_count=int(data.get("invocationCount") or 0),
        replicas=replicas,
        limits_detail=str(extra.get("limitsDetail") or ""),
        last_exit=str(extra.get("lastExit") or ""),
    )


def parse_metrics(text: str, at_s: float) -> MetricsSnapshot:
    """Parse the gateway's Prometheus text into a :class:`MetricsSnapshot`."""
    from prometheus_client.parser import text_string_to_metric_families

    fields: dict[str, dict[str, float]] = {}

    def add(name: str, key: str, value: float) -> None:
        fields.setdefault(name, {}).setdefault(key, 0.0)
        fields[name][key] += value

    workflow_buckets: dict[str, dict[float, float]] = {}
    workflow_errors: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            fn = sample.labels.get("function_name")
            if fn is None:
                wf = sample.labels.get("workflow_name")
                if wf is not None and sample.name == "gateway_workflow_seconds_bucket":
                    le = float(sample.labels.get("le", "+Inf"))
                    workflow_buckets.setdefault(wf, {})[le] = sample.value
                elif (
                    wf is not None
                    and sample.name == "gateway_workflow_invocation_total"
                    and not 200 <= int(sample.labels.get("code", "0") or 0) < 300
                ):
                    workflow_errors[wf] = workflow_errors.get(wf, 0.0) + sample.value
                continue
            fn = fn.split(".", 1)[0]  # a real OpenFaaS gateway labels ``name.namespace``
            metric = sample.name
            if metric == "gateway_function_invocation_total":
                add(fn, "completed", sample.value)
                code = int(sample.labels.get("code", "0") or 0)
                if code >= 500 or code == 0:
                    add(fn, "errors", sample.value)
            elif metric == "gateway_function_invocation_started_total":
                add(fn, "started", sample.value)
            elif metric == "gateway_function_cold_starts_total":
                add(fn, "cold_starts", sample.value)
            elif metric == "gateway_functions_seconds_sum":
                add(fn, "duration_sum_s", sample.value)
            elif metric == "gateway_function_inflight":
                add(fn, "inflight", sample.value)
            elif metric == "gateway_function_queued":
                add(fn, "queued", sample.value)
            elif metric == "gateway_function_replicas":
                state = sample.labels.get("state")
                if state in ("ready", "starting"):
                    add(fn, f"replicas_{state}", sample.value)
            elif metric == "gateway_service_count":
                add(fn, "service_count", sample.value)
    functions = {
        fn: FunctionMetrics(
            started=int(v.get("started", v.get("completed", 0))),
            completed=int(v.get("completed", 0)),
            errors=int(v.get("errors", 0)),
            cold_starts=int(v.get("cold_starts", 0)),
            duration_sum_s=float(v.get("duration_sum_s", 0.0)),
            inflight=int(v.get("inflight", 0)),
            queued=int(v.get("queued", 0)),
            replicas_ready=int(v.get("replicas_ready", v.get("service_count", 0))),
            replicas_starting=int(v.get("replicas_starting", 0)),
        )
        for fn, v in fields.items()
    }
    workflows = {
        wf: _workflow_metrics(b, errors=int(workflow_errors.get(wf, 0)))
        for wf, b in workflow_buckets.items()
    }
    return MetricsSnapshot(at_s=at_s, functions=functions, workflows=workflows)


def _workflow_metrics(cumulative: Mapping[float, float], *, errors: int) -> WorkflowMetrics:
    """A workflow's histogram from its cumulative ``le`` buckets.

    The bounds must be among :data:`WORKFLOW_LATENCY_BUCKETS_S` (ours); a bound left out has
    the count of the one below it (the gateway lists only buckets that hold requests).
    """
    total = cumulative.get(math.inf, 0.0)
    known = set(WORKFLOW_LATENCY_BUCKETS_S)
    if any(b not in known for b in cumulative if math.isfinite(b)):
        return WorkflowMetrics(completed=int(total), errors=errors)  # other bounds: counts only
    finite: list[float] = []
    for bound in WORKFLOW_LATENCY_BUCKETS_S:
        finite.append(cumulative.get(bound, finite[-1] if finite else 0.0))
    counts = [int(b - a) for a, b in itertools.pairwise([0.0, *finite, total])]
    return WorkflowMetrics(completed=int(total), errors=errors, latency_counts=tuple(counts))


class OpenFaaSPlatform:
    """A Platform backed by an OpenFaaS-compatible gateway at ``url``.

    Args:
        url: gateway base URL, e.g. ``http://127.0.0.1:8080``.
        username: basic-auth user (OpenFaaS default ``admin``).
        password: basic-auth password.
        timeout_s: default timeout for management calls.
        invoke_timeout_s: default timeout for invocations.
        metrics_url: where ``/metrics`` is served when not on ``url`` (a real OpenFaaS
            gateway serves it on its own port, 8082).

    Limits through a real OpenFaaS gateway: it has no live-limits route, so
    :meth:`set_limits` redeploys with ``PUT /system/functions``; behind it our provider applies
    a limits-only update live (cgroups, no restart), where faas-netes would restart the pods.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str = "admin",
        password: str | None = None,
        timeout_s: float = 30.0,
        invoke_timeout_s: float = 120.0,
        metrics_url: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.metrics_url = (metrics_url or url).rstrip("/")
        self.invoke_timeout_s = invoke_timeout_s
        auth = httpx.BasicAuth(username, password) if password is not None else None
        self._client = httpx.Client(
            base_url=self.url,
            auth=auth,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._closed = False
        self._owned: list[Any] = []

    @property
    def runs_canaries(self) -> bool:
        """Whether canaries (:mod:`testbed.core.canary`) work here: the testbed's gateway
        routes them and counts their calls under their own names. Behind a real OpenFaaS
        gateway (its metrics on ``metrics_url``), calls are counted under the function
        called, so a canary's share would be invisible."""
        return self.metrics_url == self.url

    def __enter__(self) -> OpenFaaSPlatform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenFaaSPlatform({self.url!r})"

    def own(self, resource: Any) -> None:
        """Close ``resource`` (e.g. a gateway process) when this client closes."""
        self._owned.append(resource)

    # ----------------------------------------------------------------- helpers
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with _translate(self.url):
            response = self._client.request(method, path, **kwargs)
        if response.status_code == 401:
            raise PlatformError(f"{self.url}: unauthorized; check the gateway password")
        return response

    @staticmethod
    def _raise_for(response: httpx.Response, name: str | None = None) -> None:
        if response.status_code < 400:
            return
        text = response.text.strip()[:500]
        if response.status_code == 404 and name is not None:
            raise FunctionNotFound(name)
        if response.status_code == 400:
            raise ConfigError(text)
        if response.status_code in (409, 422):
            raise DeployError(text)
        raise PlatformError(f"gateway answered {response.status_code}: {text}")

    # ---------------------------------------------------------------- Platform
    def deploy(self, spec: FunctionSpec) -> None:
        body = _deploy_body(spec)
        response = self._request("PUT", "/system/functions", json=body)
        if response.status_code == 404:
            response = self._request("POST", "/system/functions", json=body)
        self._raise_for(response)

    def remove(self, name: str) -> None:
        response = self._request("DELETE", "/system/functions", json={"functionName": name})
        self._raise_for(response, name)

    def list(self) -> list[FunctionStatus]:
        response = self._request("GET", "/system/functions")
        self._raise_for(response)
        return [_status_from_json(item) for item in response.json()]

    def status(self, name: str) -> FunctionStatus:
        response = self._request("GET", f"/system/function/{name}")
        self._raise_for(response, name)
        return _status_from_json(response.json())

    def scale(self, name: str, *, replicas: int) -> None:
        if replicas < 0:
            raise ConfigError(f"replicas must be >= 0, got {replicas}")
        response = self._request(
            "POST",
            f"/system/scale-function/{name}",
            json={"serviceName": name, "replicas": replicas},
        )
        self._raise_for(response, name)

    def set_limits(self, name: str, limits: Limits) -> None:
        # The testbed gateway changes limits live; a real OpenFaaS needs a redeploy (PUT),
        # which restarts the function's pods.
        response = self._request("POST", f"/system/limits/{name}", json=limits.to_openfaas())
        if response.status_code in (404, 405):
            # No live-limits route (a real OpenFaaS), or no such function: status() tells
            # which (raising FunctionNotFound), then a redeploy applies the limits.
            from dataclasses import replace

            self.deploy(replace(self.status(name).spec, limits=limits))
            return
        self._raise_for(response, name)

    def invoke(
        self,
        name: str,
        payload: bytes = b"",
        *,
        workflow: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> InvokeResult:
        path = f"/workflow/{name}" if workflow else f"/function/{name}"
        start = time.perf_counter()
        with _translate(self.url):
            response = self._client.post(
                path,
                content=payload,
                headers=dict(headers or {}),
                timeout=timeout_s or self.invoke_timeout_s,
            )
        duration = time.perf_counter() - start
        if response.status_code == 404:
            text = response.text
            if workflow and "workflow" in text:
                raise ConfigError(text.strip())
            if not workflow:
                raise FunctionNotFound(name)
        return InvokeResult(
            status_code=response.status_code,
            body=response.content,
            headers=dict(response.headers),
            cold_start=response.headers.get("X-Cold-Start", "false") == "true",
            duration_s=duration,
        )

    def metrics(self) -> MetricsSnapshot:
        with _translate(self.url):
            response = self._client.get(f"{self.metrics_url}/metrics")
        self._raise_for(response)
        snapshot = parse_metrics(response.text, at_s=time.time())
        if self.metrics_url == self.url:
            return snapshot
        # A real OpenFaaS gateway refreshes its replica gauge only every few seconds: take the
        # replica counts from the function listing instead.
        from dataclasses import replace

        functions = dict(snapshot.functions)
        for status in self.list():
            if status.name in functions:
                functions[status.name] = replace(
                    functions[status.name],
                    replicas_ready=status.replicas_ready,
                    replicas_starting=status.replicas_starting,
                )
        return replace(snapshot, functions=functions)

    def workflows(self) -> builtins.list[dict[str, Any]]:
        """Workflows the testbed gateway knows (testbed extension)."""
        response = self._request("GET", "/system/workflows")
        self._raise_for(response)
        data: builtins.list[dict[str, Any]] = json.loads(response.text)
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        for resource in reversed(self._owned):
            resource.close()
