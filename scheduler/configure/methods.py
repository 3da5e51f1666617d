"""Configurator registry: method name → factory, so the CLI, policy and bench share one list."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from scheduler.configure.base import Configurator
from scheduler.configure.objectives import Constraint
from scheduler.configure.space import SearchSpace
from testbed.core.platform import Workflow

__all__ = ["METHODS", "make_configurator"]

METHODS: dict[str, tuple[str, str]] = {
    "aquatope": (
        "scheduler.configure.search:AquatopeConfigurator",
        "safe constrained qLogNEI (cost and log-latency GPs, trust region, P(feasible) gate)",
    ),
    "paper-bo": (
        "scheduler.configure.paper_bo:PaperBOConfigurator",
        "the Aquatope paper's BO: 2 GPs, 10 random points, q=3 qNEI rounds over the [0, 1] box, "
        "leave-one-out outlier removal",
    ),
    "cherrypick": (
        "scheduler.configure.cherrypick:CherryPickConfigurator",
        "CherryPick: EI on a QoS-penalised cost, no constraint model",
    ),
    "power-tuning": (
        "scheduler.configure.grid:PowerTuningConfigurator",
        "AWS Lambda Power Tuning: memory-size grid (CPU ∝ memory), then greedy per function",
    ),
    "random": (
        "scheduler.configure.random_search:RandomConfigurator",
        "uniform random lattice points",
    ),
}


def make_configurator(
    method: str,
    space: SearchSpace,
    constraints: Sequence[Constraint],
    *,
    seed: int = 0,
    workflow: Workflow | None = None,
    **options: Any,
) -> Configurator:
    """Build configurator ``method`` for ``space``.

    ``workflow`` (the DAG) goes to the methods that use it (per-stage models); the others
    ignore it.

    Raises:
        KeyError: unknown method (the message lists the known ones).
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    module, attr = METHODS[method][0].split(":")
    cls = getattr(importlib.import_module(module), attr)
    if workflow is not None and "workflow" in inspect.signature(cls.__init__).parameters:
        options["workflow"] = workflow
    configurator: Configurator = cls(space, constraints, seed=seed, **options)
    return configurator
