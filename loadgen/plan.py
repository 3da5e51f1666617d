"""From a trace and workflow names to a send schedule: compress, cut, scale, map, merge.

Workflow and mix names are resolved through :func:`testbed.core.workflows.load_workflows` (or a
catalog passed in). ``function:NAME`` targets a plain function (``POST /function/NAME``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loadgen.schedule import Schedule, TargetKind, build_schedule, map_functions
from loadgen.trace import Trace
from testbed.core.errors import ConfigError

if TYPE_CHECKING:
    from testbed.core.workflows import WorkflowCatalog

__all__ = ["FUNCTION_PREFIX", "Plan", "plan"]

FUNCTION_PREFIX = "function:"


@dataclass(frozen=True)
class Plan:
    """A schedule plus what senders and users need to know about its targets.

    Attributes:
        schedule: requests in send order.
        mapping: trace function -> requested target (workflow, mix or ``function:NAME``).
        groups: requested target -> {concrete name: weight} (a plain workflow weighs 1).
        kinds: concrete name -> ``workflow`` or ``function``.
        qos_s: concrete name -> QoS target in seconds (NaN for plain functions).
    """

    schedule: Schedule
    mapping: dict[str, str]
    groups: dict[str, dict[str, float]]
    kinds: dict[str, TargetKind]
    qos_s: dict[str, float]


def plan(
    trace: Trace,
    targets: Sequence[str],
    *,
    catalog: WorkflowCatalog | None = None,
    top: int | None = None,
    mapping: Mapping[str, str] | None = None,
    compress: float = 1.0,
    rate_scale: float = 1.0,
    duration_s: float | None = None,
    seed: int = 0,
) -> Plan:
    """Build the send schedule for a replay.

    Args:
        trace: arrivals to replay.
        targets: workflow names, mix names (e.g. ``social-network``) or ``function:NAME``.
        catalog: workflows and mixes; default :func:`testbed.core.workflows.load_workflows`.
        top: map this many of the busiest trace functions (default one per target).
        mapping: explicit trace function -> target mapping (overrides ``top``).
        compress: time compression factor (``144``: a day in ten minutes).
        rate_scale: multiply every rate by this after compression.
        duration_s: replay only the first ``duration_s`` seconds (after compression).
        seed: seeds rate scaling and mix draws.

    Returns:
        A :class:`Plan`.

    Raises:
        ConfigError: unknown workflows, bad factors, or an empty trace.
    """
    if not targets:
        raise ConfigError("name at least one workflow to send to")
    groups: dict[str, dict[str, float]] = {}
    kinds: dict[str, TargetKind] = {}
    qos: dict[str, float] = {}
    needs_catalog = any(not t.startswith(FUNCTION_PREFIX) for t in targets)
    if needs_catalog and catalog is None:
        from testbed.core.workflows import load_workflows

        catalog = load_workflows()
    for target in targets:
        if target.startswith(FUNCTION_PREFIX):
            fn = target[len(FUNCTION_PREFIX) :]
            if not fn:
                raise ConfigError(f"{target!r}: name the function after 'function:'")
            groups[target] = {fn: 1.0}
            kinds[fn] = "function"
            qos[fn] = math.nan
            continue
        assert catalog is not None
        mix = catalog.resolve(target)
        groups[target] = dict(mix.weights)
        for wf in mix.weights:
            kinds[wf] = "workflow"
            qos[wf] = catalog.get(wf).qos.target_s
    if compress != 1.0:
        trace = trace.compress(compress)
    if duration_s is not None:
        if not duration_s > 0:
            raise ConfigError(f"duration must be positive, got {duration_s!r}")
        trace = trace.window(0.0, min(duration_s, trace.duration_s))
    if rate_scale != 1.0:
        trace = trace.scale_rate(rate_scale, seed=seed)
    if not trace.functions:
        raise ConfigError("the trace has no functions")
    chosen = map_functions(trace, list(groups), top=top, explicit=mapping)
    mixes = {t: w for t, w in groups.items() if len(w) > 1 or next(iter(w)) != t}
    # single-workflow groups resolve to themselves; function targets map to their function
    schedule = build_schedule(
        trace,
        chosen,
        mixes=mixes,
        kinds=kinds,
        seed=seed,
    )
    return Plan(schedule, chosen, groups, kinds, qos)
