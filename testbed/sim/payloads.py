"""Realistic request bodies for every function, for profiling.

A workflow's inner stages receive their predecessors' outputs, so the bodies for a stage are
captured by running the workflow's handlers in this process (``functions.inprocess``) on
payloads from ``functions.workloads``, with the gateway's data-passing rules.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from testbed.core.platform import Stage, Workflow

__all__ = ["function_payloads"]


def _stage_inputs(workflow: Workflow, handlers: dict[str, Any], body: bytes) -> dict[str, bytes]:
    """The body each function of ``workflow`` receives (its first stage's) for one invocation."""
    from functions.inprocess import run_workflow

    inputs: dict[str, bytes] = {}

    def keep_first(stage: Stage, stage_body: bytes) -> None:
        inputs.setdefault(stage.function, stage_body)

    run_workflow(workflow, handlers, body, on_stage_input=keep_first)
    return inputs


def function_payloads(
    workflows: Iterable[Workflow], functions: Iterable[str], *, n: int = 5, seed: int = 0
) -> dict[str, list[bytes]]:
    """Up to ``n`` request bodies per function in ``functions``.

    Functions of a workflow get the bodies their stage receives; a function that is its own
    payload kind in ``functions.workloads`` (``noop``, ``cpu-burn``) gets those; any other
    gets ``{}``.
    """
    from functions.inprocess import load_handlers
    from functions.workloads import WORKFLOWS, make_payload

    wanted = set(functions)
    out: dict[str, list[bytes]] = {name: [] for name in wanted}
    rng = random.Random(seed)
    for wf in workflows:
        used = [f for f in wf.functions if f in wanted]
        if not used or wf.name not in WORKFLOWS:
            continue
        handlers = load_handlers(wf.functions)
        for _ in range(n):
            inputs = _stage_inputs(wf, handlers, make_payload(wf.name, rng))
            for fn in used:
                out[fn].append(inputs[fn])
    for name in wanted:
        if not out[name]:
            out[name] = (
                [make_payload(name, rng) for _ in range(n)] if name in WORKFLOWS else [b"{}"]
            )
    return out
