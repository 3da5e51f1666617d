"""Run a workflow DAG over any way of calling one function (the gateway's pools, or HTTP).

Stages run in dependency order and fan out in parallel; what each stage receives and what the
workflow returns is ``Workflow.stage_input`` / ``Workflow.result``. The response JSON is the
one ``POST /workflow/{name}`` returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from testbed.core.platform import Workflow

if TYPE_CHECKING:
    from testbed.gateway.core import CallResult

__all__ = ["StageCall", "run_dag"]

StageCall = Callable[[str, bytes], Awaitable["CallResult"]]


def _handler_s(headers: Mapping[str, str]) -> float | None:
    """The replica's own time in the handler (its ``X-Duration-Seconds``), None without one:
    what a stage's duration spent outside it (queueing, a start, transport) is the rest."""
    for key, value in headers.items():
        if key.lower() == "x-duration-seconds":
            try:
                return float(value)
            except ValueError:
                return None
    return None


async def run_dag(workflow: Workflow, body: bytes, call: StageCall) -> tuple[int, dict[str, Any]]:
    """Run ``workflow`` on ``body``, each stage through ``call(function, payload)``.

    Returns:
        The HTTP status (200, or the first failing stage's) and the response JSON (stages with
        their times, cold starts and statuses; the sink output or the first error).
    """
    start = time.time()
    outputs: dict[str, bytes] = {}
    results: dict[str, CallResult] = {}
    done: dict[str, asyncio.Event] = {s.name: asyncio.Event() for s in workflow.stages}
    failed: list[str] = []

    async def run_stage(stage_name: str) -> None:
        stage = next(s for s in workflow.stages if s.name == stage_name)
        for dep in stage.after:
            await done[dep].wait()
        try:
            if failed:
                return
            payload = workflow.stage_input(stage, body, outputs)
            result = await call(stage.function, payload)
            results[stage.name] = result
            outputs[stage.name] = result.body
            if result.status >= 400:
                failed.append(stage.name)
        finally:
            done[stage_name].set()

    await asyncio.gather(*(run_stage(s.name) for s in workflow.stages))
    end = time.time()
    stages = [
        {
            "stage": s.name,
            "function": s.function,
            "start_s": results[s.name].start_s,
            "end_s": results[s.name].end_s,
            "duration_s": results[s.name].end_s - results[s.name].start_s,
            "cold_start": results[s.name].cold_start,
            "status": results[s.name].status,
            "handler_s": _handler_s(results[s.name].headers),
        }
        for s in workflow.topological_order()
        if s.name in results
    ]
    cold_stages = sum(1 for s in stages if s["cold_start"])
    response: dict[str, Any] = {
        "workflow": workflow.name,
        "start_s": start,
        "end_s": end,
        "duration_s": end - start,
        "cold_start": cold_stages > 0,
        "cold_stages": cold_stages,
        "stages": stages,
    }
    if failed:
        first = results[failed[0]]
        status = first.status
        response["error"] = f"stage {failed[0]!r} failed with {first.status}: " + (
            first.error or first.body.decode(errors="replace")[:300]
        )
    else:
        status = 200
        response["output"] = workflow.result(outputs)
    return status, response
