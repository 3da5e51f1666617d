"""Platform-independent scheduling policies for serverless workflows (Aquatope and baselines)."""

from __future__ import annotations

from scheduler.configure.base import Configurator
from scheduler.forecast.base import Forecaster
from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import available_policies, create_policy, register_policy

__all__ = [
    "Configurator",
    "Decision",
    "Forecaster",
    "FunctionDecision",
    "FunctionObservation",
    "Observation",
    "Policy",
    "available_policies",
    "create_policy",
    "register_policy",
]
