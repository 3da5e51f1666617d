"""Static warm pool: every function keeps the same fixed number of replicas, always.

The simplest provisioned-concurrency baseline (AWS Lambda "provisioned concurrency", a
Knative ``minScale``): ``replicas`` warm replicas per function for the whole run, whatever the
traffic. Its one knob trades idle replica-seconds linearly against cold starts. Replicas the
platform starts on demand for queued requests are never cancelled while requests wait.

Registered as ``static-pool`` (``replicas`` parameter, default 1).
"""

from __future__ import annotations

from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["StaticPoolPolicy"]


@register_policy("static-pool")
class StaticPoolPolicy(Policy):
    """Hold ``replicas`` warm replicas per function (more only while requests queue).

    Args:
        replicas: warm replicas per function (>= 0).
    """

    name = "static-pool"
    description = "Static warm pool: a fixed number of replicas per function, always."

    def __init__(self, replicas: int = 1) -> None:
        if replicas < 0:
            raise ValueError(f"static-pool: replicas must be >= 0, got {replicas}")
        self.replicas = int(replicas)

    def decide(self, observation: Observation) -> Decision:
        """``replicas`` per function, or what is alive while requests queue."""
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            want = self.replicas
            reason = f"static pool of {self.replicas}"
            if fn.queued > 0 and fn.replicas_ready + fn.replicas_starting > want:
                want = fn.replicas_ready + fn.replicas_starting
                reason += f"; {fn.queued} queued: keep the {want} alive"
            out[name] = FunctionDecision(replicas=want, reason=reason)
        return Decision(functions=out, reason=f"static pool {self.replicas}")
