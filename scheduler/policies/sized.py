"""Policy ``sized``: any replica policy, with CPU/memory limits from the online configurator.

The sizing baselines of the evaluation are a pre-warmer plus a sizing method: power-tuning,
CherryPick or the paper's BO sizing the functions of a workflow whose replicas
hybrid-histogram keeps (``replicas: hybrid-histogram``, ``config_method: power-tuning``).
Replica targets come from the named policy (with its defaults), limits from
``aquatope-config`` run with the chosen method and its other ``config_*`` parameters, merged
per function as :func:`~scheduler.policies.aquatope.compose` merges Aquatope's own halves.
Aquatope itself is ``aquatope`` (its pre-warmer with the same configurator).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from scheduler.policies.aquatope import CONFIG_POLICY, CONFIG_PREFIX, compose, config_parameters
from scheduler.policy import Decision, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["SizedPolicy"]

# policies that set limits themselves, or need the trace's future: not a replica half
_NOT_REPLICA_POLICIES = frozenset({"sized", "aquatope", CONFIG_POLICY})


class SizedPolicy(Policy):
    """A replica policy composed with ``aquatope-config`` (any of its sizing methods).

    Args:
        replicas: the registered policy that sets replica targets (its default parameters).
        **options: ``aquatope-config`` parameters prefixed with ``config_`` (e.g.
            ``config_method``, ``config_budget``).

    Raises:
        ValueError: an unknown or unsuitable replica policy, or an unknown option.
    """

    name = "sized"
    description = (
        "a replica policy (e.g. hybrid-histogram) + aquatope-config limits by any sizing "
        "method (power-tuning, cherrypick, paper-bo, random, aquatope)"
    )

    def __init__(self, *, replicas: str = "hybrid-histogram", **options: Any) -> None:
        from scheduler.registry import available_policies, create_policy

        known = available_policies()
        usable = sorted(
            n for n, i in known.items() if n not in _NOT_REPLICA_POLICIES and not i.needs_arrivals
        )
        if replicas not in usable:
            raise ValueError(f"sized: replicas must be one of {usable}, got {replicas!r}")
        unknown = sorted(k for k in options if not k.startswith(CONFIG_PREFIX))
        if unknown:
            raise ValueError(f"sized: unknown option(s) {unknown} (configurator ones: config_*)")
        config = {k[len(CONFIG_PREFIX) :]: v for k, v in options.items()}
        self.replicas_policy = replicas
        self.replicas = create_policy(replicas)
        self.config = create_policy(CONFIG_POLICY, config)

    def decide(self, observation: Observation) -> Decision:
        """The replica policy's targets merged with the configurator's limits."""
        return compose(self.replicas.decide(observation), self.config.decide(observation))

    def state_dict(self) -> dict[str, Any]:
        """Both halves' state."""
        return {"replicas": self.replicas.state_dict(), "config": self.config.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore both halves."""
        self.replicas.load_state_dict(state.get("replicas", {}))
        self.config.load_state_dict(state.get("config", {}))


def _registry_signature() -> tuple[inspect.Signature, dict[str, Any]]:
    """What the registry reads: ``replicas`` and the configurator's parameters as ``config_*``."""
    kw = inspect.Parameter.KEYWORD_ONLY
    replicas = inspect.Parameter("replicas", kw, default="hybrid-histogram", annotation="str")
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), replicas]
    params += config_parameters()
    hints = {p.name: p.annotation for p in params[1:]}
    return inspect.Signature(params), hints


_SIG, _HINTS = _registry_signature()
SizedPolicy.__init__.__signature__ = _SIG  # type: ignore[attr-defined]
SizedPolicy.__init__.__annotations__ = {**_HINTS, "return": "None"}
register_policy("sized")(SizedPolicy)
