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

import inspect
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy, config_annotations
from scheduler.policies.prewarm_config import PrewarmConfig
from scheduler.policy import Decision, FunctionDecision, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["AquatopePolicy", "compose", "config_parameters"]

CONFIG_POLICY = "aquatope-config"
CONFIG_PREFIX = "config_"  # registry parameters passed on to the configurator, prefix removed


def compose(prewarm: Decision, config: Decision | None) -> Decision:
    """Merge a pre-warm decision (replicas) with a configurator decision (limits).

    Args:
        prewarm: decision of ``aquatope-prewarm``.
        config: decision of ``aquatope-config``, or None when there is none.

    Returns:
        One decision: per function the larger replica target and the configurator's limits
        (and canary).
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
        merged[name] = FunctionDecision(
            replicas=replicas,
            limits=c.limits,
            reason=reason,
            canary=c.canary,
            canary_share=c.canary_share,
            end_canary=c.end_canary,
        )
    valid = prewarm.valid
    return Decision(functions=merged, valid=valid, reason=prewarm.reason or config.reason)


class AquatopePolicy(Policy):
    """Aquatope: calibrated workflow-aware pre-warming plus online CPU/memory sizing.

    Composed from objects: ``AquatopePolicy(prewarm=AquatopePrewarmPolicy(cfg), config=...)``.
    Built by name (registry, experiment YAML), the parameters are the fields of
    :class:`~scheduler.policies.prewarm_config.PrewarmConfig`, ``configure`` (compose
    ``aquatope-config`` when it is registered) and the configurator's own parameters prefixed
    with ``config_`` (e.g. ``config_budget``).

    Args:
        prewarm: the pre-warmer, or its options (default options when omitted).
        config: the configurator policy (None: built from the registry if ``configure``).
        configure: compose ``aquatope-config`` when no ``config`` is given.
        **options: ``PrewarmConfig`` fields (applied to ``prewarm`` when it is a config or
            omitted) and ``config_*`` parameters of the configurator.

    Raises:
        ValueError: an unknown option, or options given together with a built pre-warmer.
    """

    name = "aquatope"
    description = (
        "Aquatope: aquatope-prewarm replica targets + aquatope-config limits (when available)"
    )

    def __init__(
        self,
        *,
        prewarm: AquatopePrewarmPolicy | PrewarmConfig | None = None,
        config: Policy | None = None,
        configure: bool = True,
        **options: Any,
    ) -> None:
        config_opts = {
            k[len(CONFIG_PREFIX) :]: v for k, v in options.items() if k.startswith(CONFIG_PREFIX)
        }
        prewarm_opts = {k: v for k, v in options.items() if not k.startswith(CONFIG_PREFIX)}
        if isinstance(prewarm, AquatopePrewarmPolicy):
            if prewarm_opts:
                raise ValueError("aquatope: pre-warm options given with a built pre-warmer")
            self.prewarm = prewarm
        else:
            self.prewarm = AquatopePrewarmPolicy(prewarm, **prewarm_opts)
        self.config: Policy | None = config
        self.config_note = f"{CONFIG_POLICY} given" if config is not None else "disabled"
        if config is None and configure:
            self.config, self.config_note = _build_config(config_opts)
        elif config_opts and config is None:
            raise ValueError("aquatope: config_* options given with configure=false")

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


def _build_config(params: Mapping[str, Any]) -> tuple[Policy | None, str]:
    """Instantiate ``aquatope-config`` if registered; else None and why."""
    from scheduler.registry import available_policies, create_policy

    if CONFIG_POLICY not in available_policies():
        return None, f"{CONFIG_POLICY} not available"
    return create_policy(CONFIG_POLICY, dict(params)), f"{CONFIG_POLICY} composed"


def _registry_signature() -> tuple[inspect.Signature, dict[str, Any]]:
    """What the registry reads: pre-warm fields, ``configure``, ``config_*`` parameters."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    hints: dict[str, Any] = dict(config_annotations())
    for f in fields(PrewarmConfig):
        params.append(inspect.Parameter(f.name, kw, default=f.default, annotation=f.type))
    params.append(inspect.Parameter("configure", kw, default=True, annotation="bool"))
    hints["configure"] = "bool"
    for param in config_parameters():
        params.append(param)
        hints[param.name] = param.annotation
    return inspect.Signature(params), hints


def config_parameters() -> list[inspect.Parameter]:
    """The configurator's registry parameters as keyword-only ``config_*`` ones (none when
    ``aquatope-config`` is not available), for policies that compose it."""
    import importlib

    from scheduler.registry import _REGISTRY

    try:  # register the configurator first (whoever imports this module first)
        importlib.import_module("scheduler.policies.aquatope_config")
    except ModuleNotFoundError as exc:
        if exc.name != "scheduler.policies.aquatope_config":
            raise
    info = _REGISTRY.get(CONFIG_POLICY)
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(CONFIG_PREFIX + pname, kw, default=default, annotation=kind)
        for pname, (kind, default) in (info.parameters.items() if info is not None else ())
    ]


_SIG, _HINTS = _registry_signature()
AquatopePolicy.__init__.__signature__ = _SIG  # type: ignore[attr-defined]
AquatopePolicy.__init__.__annotations__ = {**_HINTS, "return": "None"}
register_policy("aquatope")(AquatopePolicy)
