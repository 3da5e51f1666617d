"""Policy ``aquatope``: Aquatope's two halves composed — pre-warming plus online sizing.

Replica targets come from ``aquatope-prewarm`` (calibrated forecasts, concurrency-based,
workflow-aware). Per-function CPU/memory limits come from the online configurator policy
``aquatope-config`` when it is registered (``scheduler/policies/aquatope_config.py``). The
composition is looked up by name at construction, so this policy works — as pre-warming only,
saying so in every decision's reason — when that configurator does not exist yet or fails to
build.

Composition rule, per function: ``replicas`` from the pre-warmer (the configurator's replica
target, if it sets one, is a floor), ``limits`` from the configurator. Both see the same
observation every tick, so the pre-warmer measures the service time the configurator's limits
produce and sizes the pool for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["AquatopePolicy", "compose", "parse_params"]

CONFIG_POLICY = "aquatope-config"


def parse_params(text: str) -> dict[str, str]:
    """Parse ``"k=v;k2=v2"`` (``;`` or ``,`` separated) into a dict of strings.

    Raises:
        ValueError: an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in text.replace(",", ";").split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"config_params item {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def compose(prewarm: Decision, config: Decision | None) -> Decision:
    """Merge a pre-warm decision (replicas) with a configurator decision (limits).

    Args:
        prewarm: decision of ``aquatope-prewarm``.
        config: decision of ``aquatope-config``, or None when there is none.

    Returns:
        One decision: per function the larger replica target and the configurator's limits.
        Valid when the pre-warm decision is (an invalid configurator decision only drops its
        limits).
    """
    if config is None or not config.valid:
        return prewarm
    names = set(prewarm.functions) | set(config.functions)
    merged: dict[str, FunctionDecision] = {}
    for name in sorted(names):
        p = prewarm.functions.get(name, FunctionDecision())
        c = config.functions.get(name, FunctionDecision())
        replicas = p.replicas
        if c.replicas is not None:
            replicas = c.replicas if replicas is None else max(replicas, c.replicas)
        reason = "; ".join(r for r in (p.reason, c.reason) if r)
        merged[name] = FunctionDecision(replicas=replicas, limits=c.limits, reason=reason)
    valid = prewarm.valid
    return Decision(functions=merged, valid=valid, reason=prewarm.reason or config.reason)


@register_policy("aquatope")
class AquatopePolicy(Policy):
    """Aquatope: calibrated workflow-aware pre-warming plus online CPU/memory sizing."""

    name = "aquatope"
    description = (
        "Aquatope: aquatope-prewarm replica targets + aquatope-config limits (when available)"
    )

    def __init__(
        self,
        forecaster: str = "gp",
        step_s: float = 10.0,
        quantile: float = 0.0,
        idle_weight: float = 1.0,
        cold_start_s: float = 1.0,
        dag: bool = True,
        start_weight: float = 1.0,
        keepalive: bool = True,
        max_start_ratio: float = 1.0,
        configure: bool = True,
        config_params: str = "",
        seed: int = 0,
    ) -> None:
        """Build the composed policy.

        Args:
            forecaster / step_s / quantile / idle_weight / cold_start_s / dag / start_weight /
                keepalive / max_start_ratio / seed: passed to ``aquatope-prewarm``.
            configure: compose ``aquatope-config`` when it is registered.
            config_params: ``"k=v;k2=v2"`` parameters for ``aquatope-config``.
        """
        self.prewarm = AquatopePrewarmPolicy(
            forecaster=forecaster,
            step_s=step_s,
            quantile=quantile,
            idle_weight=idle_weight,
            cold_start_s=cold_start_s,
            dag=dag,
            start_weight=start_weight,
            keepalive=keepalive,
            max_start_ratio=max_start_ratio,
            seed=seed,
        )
        self.config: Policy | None = None
        self.config_note = "configurator disabled"
        if configure:
            self.config, self.config_note = _build_config(parse_params(config_params))

    def decide(self, observation: Observation) -> Decision:
        """Pre-warm targets merged with the configurator's limits."""
        prewarm = self.prewarm.decide(observation)
        config = self.config.decide(observation) if self.config is not None else None
        merged = compose(prewarm, config)
        if self.config is None:
            return Decision(
                functions=merged.functions,
                valid=merged.valid,
                reason=f"pre-warm only ({self.config_note})",
            )
        return merged

    def state_dict(self) -> dict[str, Any]:
        """Both halves' state."""
        return {
            "prewarm": self.prewarm.state_dict(),
            "config": self.config.state_dict() if self.config is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore both halves."""
        self.prewarm.load_state_dict(state.get("prewarm", {}))
        if self.config is not None and state.get("config") is not None:
            self.config.load_state_dict(state["config"])


def _build_config(params: Mapping[str, str]) -> tuple[Policy | None, str]:
    """Instantiate ``aquatope-config`` if registered; else None and why."""
    from scheduler.registry import available_policies, create_policy

    if CONFIG_POLICY not in available_policies():
        return None, f"{CONFIG_POLICY} not available"
    return create_policy(CONFIG_POLICY, dict(params)), f"{CONFIG_POLICY} composed"
