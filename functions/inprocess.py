"""Run the shipped handlers and workflows inside this process, without a gateway.

For tests and ``bench/functions_latency.py``: the same handler code the replicas run, called
directly, with the gateway's data-passing rules (a root stage gets the request body, a stage
with one predecessor gets its output, a join gets ``{stage name: output}``, the result is the
single sink's output or ``{sink name: output}``). Parallel stages run one after the other here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.core.platform import Stage, Workflow
from testbed.runner.handler import Event, HandlerResponse, call_handler, load_handler

__all__ = ["FUNCTIONS_DIR", "StageFailed", "WorkflowRun", "call", "load_handlers", "run_workflow"]

FUNCTIONS_DIR = Path(__file__).resolve().parent

Handler = Callable[[Event, Any], Any]


class StageFailed(RuntimeError):
    """A stage answered with a non-2xx status."""

    def __init__(self, stage: str, response: HandlerResponse) -> None:
        super().__init__(
            f"stage {stage!r} answered {response.status_code}: {response.body[:200]!r}"
        )
        self.stage = stage
        self.response = response


def load_handlers(names: Iterable[str], functions_dir: Path = FUNCTIONS_DIR) -> dict[str, Handler]:
    """Import ``functions_dir/<name>/handler.py`` for each name (models load now)."""
    return {name: load_handler(functions_dir / name) for name in names}


def call(handler: Handler, body: bytes | str | Mapping[str, Any]) -> HandlerResponse:
    """Call one handler with a JSON body (bytes and str are sent as they are)."""
    if isinstance(body, Mapping):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return call_handler(handler, Event(body=body, headers={"Content-Type": "application/json"}))


@dataclass(frozen=True)
class WorkflowRun:
    """The output of one in-process workflow run and each stage's duration (seconds)."""

    output: Any
    stage_s: Mapping[str, float]


def run_workflow(
    workflow: Workflow,
    handlers: Mapping[str, Handler],
    body: bytes,
    *,
    on_stage_input: Callable[[Stage, bytes], None] | None = None,
) -> WorkflowRun:
    """Run ``workflow`` on ``body`` with the data-passing rule of ``Workflow.stage_input``.

    Args:
        workflow: the DAG to run.
        handlers: a loaded handler per function of the workflow.
        body: the invocation's request body.
        on_stage_input: called with each stage and the body it receives, before it runs.

    Raises:
        StageFailed: a stage answered with a non-2xx status.
    """
    outputs: dict[str, bytes] = {}
    stage_s: dict[str, float] = {}
    for stage in workflow.topological_order():
        stage_body = workflow.stage_input(stage, body, outputs)
        if on_stage_input is not None:
            on_stage_input(stage, stage_body)
        started = time.perf_counter()
        response = call(handlers[stage.function], stage_body)
        stage_s[stage.name] = time.perf_counter() - started
        if not 200 <= response.status_code < 300:
            raise StageFailed(stage.name, response)
        outputs[stage.name] = response.body
    return WorkflowRun(workflow.result(outputs), stage_s)
