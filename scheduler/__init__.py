"""Platform-independent scheduling policies for serverless workflows (Aquatope and baselines)."""

from __future__ import annotations

from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import available_policies, create_policy, register_policy

__all__ = [
    "Decision",
    "FunctionDecision",
    "FunctionObservation",
    "Observation",
    "Policy",
    "available_policies",
    "create_policy",
    "register_policy",
]
