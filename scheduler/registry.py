"""Policy registry: ``@register_policy("name")`` and look-up by name with typed parameters.

A policy class with ``needs_arrivals = True`` (the oracle) takes the trace's arrival times as
its ``arrivals`` parameter (target name -> times in seconds); :attr:`PolicyInfo.needs_arrivals`
tells an experiment runner to pass them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from scheduler.policy import Policy

__all__ = ["PolicyInfo", "available_policies", "create_policy", "register_policy"]

_P = TypeVar("_P", bound=type[Policy])


@dataclass(frozen=True)
class PolicyInfo:
    """A registered policy: its factory, one-line description and parameters with defaults."""

    name: str
    factory: Callable[..., Policy]
    description: str
    parameters: Mapping[str, tuple[type, Any]]
    presets: Mapping[str, Any]
    needs_arrivals: bool = False


_REGISTRY: dict[str, PolicyInfo] = {}

# Modules that register policies on import; loaded lazily so `import scheduler` stays light.
_POLICY_MODULES = (
    "scheduler.policies.always_on",
    "scheduler.policies.openfaas_ce",
    "scheduler.policies.keepalive",
    "scheduler.policies.kpa",
    "scheduler.policies.hybrid_histogram",
    "scheduler.policies.static_pool",
    "scheduler.policies.oracle",
    "scheduler.policies.aquatope_prewarm",
    "scheduler.policies.aquatope_config",
    "scheduler.policies.aquatope",
    "scheduler.policies.sized",
)


def register_policy(name: str, **presets: Any) -> Callable[[_P], _P]:
    """Class decorator: register ``cls`` as policy ``name`` (``presets`` fix some parameters)."""

    def wrap(cls: _P) -> _P:
        sig = inspect.signature(cls.__init__)
        hints = inspect.get_annotations(cls.__init__, eval_str=True)
        params: dict[str, tuple[type, Any]] = {}
        for pname, param in sig.parameters.items():
            if pname == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if param.default is inspect.Parameter.empty:
                raise TypeError(f"policy {name}: parameter {pname!r} needs a default")
            if pname in presets:
                continue
            params[pname] = (hints.get(pname, type(param.default)), param.default)
        doc = (cls.description or (cls.__doc__ or "").strip().splitlines()[0]).strip()
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} registered twice")

        def factory(**kwargs: Any) -> Policy:
            return cls(**{**presets, **kwargs})

        needs = bool(getattr(cls, "needs_arrivals", False))
        _REGISTRY[name] = PolicyInfo(name, factory, doc, params, presets, needs)
        return cls

    return wrap


def _load_all() -> None:
    for module in _POLICY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_policies() -> dict[str, PolicyInfo]:
    """Every registered policy, by name."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def _convert(kind: Any, raw: str, where: str) -> Any:
    text = raw.strip()
    if kind is bool or kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}: expected true/false, got {raw!r}")
    for simple in (int, float, str):
        if kind is simple or kind == simple.__name__:
            try:
                return simple(text)
            except ValueError:
                raise ValueError(f"{where}: expected {simple.__name__}, got {raw!r}") from None
    if text.lower() in ("none", "null") and "None" in str(kind):  # an optional left unset
        return None
    try:  # optional / union types: try the numeric readings first
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def create_policy(name: str, params: Mapping[str, Any] | None = None) -> Policy:
    """Instantiate policy ``name``; string parameter values are converted to their types.

    Raises:
        KeyError: unknown policy (message lists the known ones).
        ValueError: unknown parameter or a value of the wrong type.
    """
    policies = available_policies()
    if name not in policies:
        raise KeyError(f"unknown policy {name!r}; known: {', '.join(policies)}")
    info = policies[name]
    kwargs: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key not in info.parameters:
            known = ", ".join(info.parameters) or "none"
            raise ValueError(f"policy {name}: unknown parameter {key!r} (parameters: {known})")
        kind, _default = info.parameters[key]
        kwargs[key] = _convert(kind, value, f"{name}.{key}") if isinstance(value, str) else value
    return info.factory(**kwargs)
