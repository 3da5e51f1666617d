"""Who sends: the open-loop sender and the Locust user classes for the web UI.

Senders only send. Each request's intended time, actual send time, end time, status,
cold-start flags and stages travel in the ``context`` of Locust's ``request`` event, where
:class:`loadgen.record.Recorder` (and Locust's own statistics) pick them up.

Imports Locust: import this module only inside a load-generator process.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from locust import FastHttpUser, constant_throughput, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment

from loadgen.payloads import PayloadPool
from loadgen.record import CONTEXT_KEY, RequestRecord
from testbed.core.schema import CANCELLED_AT_END

__all__ = ["OpenLoopSender", "WorkflowUser", "make_user_classes", "path_for"]

Clock = Callable[[], float]


def path_for(name: str, kind: str) -> str:
    """URL path of a workflow (``/workflow/NAME``) or a function (``/function/NAME``)."""
    return f"/{'function' if kind == 'function' else 'workflow'}/{name}"


def _parse(body: bytes, headers: Any, kind: str) -> tuple[bool, tuple[dict[str, Any], ...]]:
    """(cold_start, stages) from a gateway response."""
    header = ""
    if headers is not None:
        header = str(headers.get("X-Cold-Start") or headers.get("x-cold-start") or "")
    cold = header.lower() == "true"
    if kind != "workflow" or not body:
        return cold, ()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return cold, ()
    if not isinstance(data, dict):
        return cold, ()
    stages = data.get("stages")
    stage_list = tuple(s for s in stages if isinstance(s, dict)) if isinstance(stages, list) else ()
    return cold or bool(data.get("cold_start")), stage_list


def _send(
    session: FastHttpSession,
    *,
    request_id: int,
    name: str,
    kind: str,
    intended_s: float,
    qos_target_s: float,
    body: bytes,
    clock: Clock,
) -> None:
    """POST one request, timing it ourselves; the request event carries the record."""
    rec = RequestRecord(
        request_id=request_id,
        workflow=name,
        kind=kind,
        intended_s=intended_s,
        qos_target_s=qos_target_s,
    )
    path = path_for(name, kind)
    try:
        rec.sent_s = clock()
        with session.request(
            "POST",
            path,
            name=path,
            data=body,  # type: ignore[arg-type]  # bytes are sent as they are
            catch_response=True,
            context={CONTEXT_KEY: rec},
        ) as resp:
            rec.end_s = clock()
            rec.status = int(resp.status_code or 0)
            if resp.status_code and 200 <= resp.status_code < 300:
                rec.cold_start, rec.stages = _parse(resp.content or b"", resp.headers, kind)
                resp.success()
            else:
                err = getattr(resp, "error", None)
                rec.error = (str(err) if err else f"HTTP {rec.status}")[:200].replace("\n", " ")
                if rec.status:
                    rec.cold_start, rec.stages = _parse(b"", resp.headers, kind)
                resp.failure(rec.error)
            resp.request_meta["response_time"] = (rec.end_s - rec.sent_s) * 1000.0
    except gevent.GreenletExit:
        rec.end_s = clock()
        rec.error = CANCELLED_AT_END
        _fire_failure(session, rec, path)
        raise


def _fire_failure(session: FastHttpSession, rec: RequestRecord, path: str) -> None:
    session.request_event.fire(
        request_type="POST",
        name=path,
        response_time=0.0,
        response_length=0,
        response=None,
        context={CONTEXT_KEY: rec},
        exception=RuntimeError(rec.error),
        start_time=time.time(),
        url=path,
    )


class OpenLoopSender:
    """Sends scheduled requests over one pooled connection set; never waits for responses.

    Args:
        environment: the Locust environment whose ``request`` event gets every request.
        base_url: gateway URL.
        payloads: bodies per target.
        clock: seconds since the run's start (monotonic).
        max_in_flight: connections in the pool (and the in-flight cap the dispatcher enforces).
        timeout_s: network timeout of one request.
    """

    def __init__(
        self,
        environment: Environment,
        base_url: str,
        payloads: PayloadPool,
        *,
        clock: Clock,
        max_in_flight: int,
        timeout_s: float,
    ) -> None:
        from geventhttpclient.client import HTTPClientPool

        self.session = FastHttpSession(
            base_url.rstrip("/"),
            request_event=environment.events.request,
            user=None,
            # Locust ignores the session's timeouts when a pool is given: set them on the pool.
            client_pool=HTTPClientPool(
                concurrency=max_in_flight,
                network_timeout=timeout_s,
                connection_timeout=min(timeout_s, 10.0),
            ),
            network_timeout=timeout_s,
            connection_timeout=min(timeout_s, 10.0),
            max_retries=0,
        )
        self.payloads = payloads
        self.clock = clock

    def send(
        self, request_id: int, name: str, kind: str, intended_s: float, qos_target_s: float
    ) -> None:
        """Send one request now and record it (run this in its own greenlet)."""
        _send(
            self.session,
            request_id=request_id,
            name=name,
            kind=kind,
            intended_s=intended_s,
            qos_target_s=qos_target_s,
            body=self.payloads.get(name),
            clock=self.clock,
        )

    def drop(
        self,
        request_id: int,
        name: str,
        kind: str,
        intended_s: float,
        qos_target_s: float,
        reason: str,
    ) -> None:
        """Record a request that was never sent (e.g. the in-flight cap was reached)."""
        now = self.clock()
        rec = RequestRecord(
            request_id=request_id,
            workflow=name,
            kind=kind,
            intended_s=intended_s,
            qos_target_s=qos_target_s,
            end_s=now,
            error=f"dropped: {reason}",
        )
        _fire_failure(self.session, rec, path_for(name, kind))


class WorkflowUser(FastHttpUser):
    """Base of the web UI's users: one request per second each, so users = requests/s.

    Subclasses set ``targets`` (name -> weight) and get their tasks from
    :func:`make_user_classes`.
    """

    abstract = True
    wait_time = constant_throughput(1.0)
    targets: Mapping[str, float] = {}
    kinds: Mapping[str, str] = {}
    qos: Mapping[str, float] = {}
    payloads: PayloadPool | None = None
    clock: Clock = time.perf_counter
    _next_id = 0

    def call(self, name: str) -> None:
        """Send one request to ``name`` now (closed loop: waits for the response)."""
        cls = WorkflowUser
        cls._next_id += 1
        now = self.clock()
        _send(
            self.client,
            request_id=cls._next_id,
            name=name,
            kind=self.kinds.get(name, "workflow"),
            intended_s=now,
            qos_target_s=self.qos.get(name, math.nan),
            body=self.payloads.get(name) if self.payloads else b"{}",
            clock=self.clock,
        )


def make_user_classes(
    targets: Mapping[str, Mapping[str, float]],
    *,
    kinds: Mapping[str, str],
    qos: Mapping[str, float],
    payloads: PayloadPool,
    clock: Clock,
) -> list[type[WorkflowUser]]:
    """One user class per workflow or mix (e.g. the social network's 20/40/40 mix).

    Args:
        targets: user class label -> {concrete workflow: weight}.
        kinds: concrete name -> ``workflow`` or ``function``.
        qos: concrete workflow -> QoS target in seconds.
        payloads: request bodies.
        clock: seconds since the run started.

    Returns:
        Locust user classes, named after the labels.
    """
    classes: list[type[WorkflowUser]] = []
    for label, weights in targets.items():
        tasks: dict[Callable[..., None], int] = {}
        for name, weight in weights.items():

            def one(self: WorkflowUser, _name: str = name) -> None:
                self.call(_name)

            one.__name__ = f"call_{name.replace('-', '_')}"
            tasks[task(one)] = max(1, round(float(weight) * 100))
        cls_name = "".join(p.capitalize() for p in re.split(r"[^0-9A-Za-z]+", label)) + "User"
        attrs: dict[str, Any] = {
            "tasks": tasks,
            "targets": dict(weights),
            "kinds": dict(kinds),
            "qos": dict(qos),
            "payloads": payloads,
            "clock": staticmethod(clock),
            "abstract": False,
            "__doc__": f"Sends to {label} ({', '.join(f'{k} {v:g}' for k, v in weights.items())}).",
        }
        classes.append(type(cls_name, (WorkflowUser,), attrs))
    return classes
