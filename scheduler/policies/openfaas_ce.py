"""``openfaas-ce``: the real OpenFaaS CE autoscaler acts, this policy only observes.

Behind ``aquatope up --platform openfaas`` the OpenFaaS gateway scales functions itself:
Prometheus raises ``APIHighInvocationRate`` on a function's request rate, AlertManager posts it
to the gateway's ``/system/alert``, and the gateway steps the replicas between the
``com.openfaas.scale.min/max`` labels. Running this policy in an experiment records the same
observations and metrics as every other policy while leaving every decision to that path, so
it can be compared with ``always-on``, our emulation of the same autoscaler.
"""

from __future__ import annotations

from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["OpenFaaSCEPolicy"]


@register_policy("openfaas-ce")
class OpenFaaSCEPolicy(Policy):
    """Observe only: OpenFaaS CE's own alert autoscaler changes the replicas.

    Every tick returns a valid decision that leaves each function's replicas and limits as
    they are (``replicas=None``), with the observed target and ready replicas as its reason.
    """

    name = "openfaas-ce"
    description = "Real OpenFaaS CE: observe only; Prometheus + AlertManager + gateway scale."

    def decide(self, observation: Observation) -> Decision:
        """Leave every function as it is. See the class docstring."""
        return Decision(
            functions={
                name: FunctionDecision(
                    reason=f"observed: target {fn.target_replicas}, ready {fn.replicas_ready}"
                )
                for name, fn in observation.functions.items()
            },
            reason="openfaas-ce: the gateway's alert autoscaler acts",
        )
