"""Resource configurators: per-function CPU and memory that meet the workflow's QoS cheaply.

Pure logic (no I/O) except :mod:`scheduler.configure.evaluate`, which measures configurations.
torch/botorch load only when a Bayesian method actually fits a model.

Layout: ``space`` (the lattice) and ``transform`` (the one [0, 1] mapping); ``base`` (the
``Configurator`` protocol, samples); ``objectives`` (cost and constraint callables);
``surrogate`` (GPs); ``search`` (Aquatope's safe constrained BO); ``cherrypick``, ``grid``
(power tuning), ``random_search`` (baselines); ``methods`` (registry); ``loop`` (offline
driver); ``drift`` (change detection for online re-tuning); ``evaluate`` (evaluators).
"""

from __future__ import annotations

from scheduler.configure.base import ConfigSample, Configurator, Measurement, QoSUnreachable
from scheduler.configure.loop import SearchResult, run_search
from scheduler.configure.methods import METHODS, make_configurator
from scheduler.configure.objectives import (
    LatencyConstraint,
    best_feasible,
    cost_objective,
    is_feasible,
    qos_constraint,
)
from scheduler.configure.space import Configuration, FunctionConfig, FunctionSpace, SearchSpace
from scheduler.configure.transform import UnitTransform

__all__ = [
    "METHODS",
    "ConfigSample",
    "Configuration",
    "Configurator",
    "FunctionConfig",
    "FunctionSpace",
    "LatencyConstraint",
    "Measurement",
    "QoSUnreachable",
    "SearchResult",
    "SearchSpace",
    "UnitTransform",
    "best_feasible",
    "cost_objective",
    "is_feasible",
    "make_configurator",
    "qos_constraint",
    "run_search",
]
