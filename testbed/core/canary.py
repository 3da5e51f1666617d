"""Canary replicas: a trial configuration on a bounded share of one function's calls.

A canary of function ``f`` is a function deployed beside it, named ``f-canary``: the same
code, the trial's limits, one replica (scale min = max = 1), and two labels,
``com.aquatope.canary-of: f`` and ``com.aquatope.canary-share: s``. Every backend that
routes (the gateway, live or behind OpenFaaS CE, and the simulator) sends a call for ``f``
to the canary only when

* its replica is ready with a free slot and nothing queued for it (a call never waits for
  the canary, so the canary adds no delay of its own), and
* fewer than ``floor(s * n)`` of the ``n`` calls ``f`` has had since the canary was
  deployed went there (the *bound*: whatever the trial does, at most that share of the
  calls meets it, plus one per retry of a call the canary dropped, which goes to ``f``).

The canary's calls are counted under its own name (metrics, per-stage records), so its
errors, OOM kills and latencies are the trial's and nobody else's. Removing ``f`` removes
its canary; :func:`set_canary` and :func:`end_canary` drive it on a platform that says it
runs canaries (``runs_canaries``: the testbed's own gateway, local or Docker, and the
simulator; not a real OpenFaaS gateway, which counts calls under the function called).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from testbed.core.config import Limits
from testbed.core.errors import ConfigError, DeployError, FunctionNotFound, PlatformError
from testbed.core.platform import LABEL_SCALE_MAX, LABEL_SCALE_MIN, FunctionSpec, Platform

__all__ = [
    "CANARY_SUFFIX",
    "DEFAULT_SHARE",
    "LABEL_CANARY_OF",
    "LABEL_CANARY_SHARE",
    "CanaryRoute",
    "canary_name",
    "canary_of",
    "canary_spec",
    "check_deploy",
    "end_canary",
    "set_canary",
]

LABEL_CANARY_OF = "com.aquatope.canary-of"
LABEL_CANARY_SHARE = "com.aquatope.canary-share"
CANARY_SUFFIX = "-canary"
DEFAULT_SHARE = 0.1


def canary_name(name: str) -> str:
    """The canary's function name for function ``name``."""
    return name + CANARY_SUFFIX


def canary_of(spec: FunctionSpec) -> tuple[str, float] | None:
    """``(primary, share)`` when ``spec`` is a canary, else None.

    Raises:
        ConfigError: the labels are inconsistent (a share outside (0, 1], a name that is
            not ``<primary>-canary``, one label without the other).
    """
    primary = spec.labels.get(LABEL_CANARY_OF)
    raw_share = spec.labels.get(LABEL_CANARY_SHARE)
    if primary is None and raw_share is None:
        return None
    if primary is None or raw_share is None:
        raise ConfigError(
            f"{spec.name}: a canary needs both labels {LABEL_CANARY_OF} and {LABEL_CANARY_SHARE}"
        )
    if spec.name != canary_name(primary):
        raise ConfigError(
            f"{spec.name}: the canary of {primary!r} must be named {canary_name(primary)!r}"
        )
    try:
        share = float(raw_share)
    except ValueError:
        raise ConfigError(
            f"{spec.name}: {LABEL_CANARY_SHARE} must be a number, got {raw_share!r}"
        ) from None
    if not 0.0 < share <= 1.0 or math.isnan(share):
        raise ConfigError(f"{spec.name}: {LABEL_CANARY_SHARE} must be in (0, 1], got {share:g}")
    return primary, share


def canary_spec(
    primary: FunctionSpec, limits: Limits, *, share: float = DEFAULT_SHARE
) -> FunctionSpec:
    """The canary of ``primary`` at ``limits`` (unset fields keep the primary's).

    Raises:
        ConfigError: ``primary`` is itself a canary, its canary's name would be too long, or
            ``share`` is outside (0, 1].
    """
    if canary_of(primary) is not None:
        raise ConfigError(f"{primary.name} is a canary; a canary has no canary")
    labels = {
        **primary.labels,
        LABEL_SCALE_MIN: "1",
        LABEL_SCALE_MAX: "1",
        LABEL_CANARY_OF: primary.name,
        LABEL_CANARY_SHARE: repr(float(share)),
    }
    spec = replace(
        primary, name=canary_name(primary.name), labels=labels, limits=primary.limits.merged(limits)
    )
    canary_of(spec)  # validates the share
    return spec


def check_deploy(
    spec: FunctionSpec,
    deployed: Callable[[str], FunctionSpec | None],
) -> tuple[str, float] | None:
    """``canary_of(spec)``, once a platform whose deployed specs ``deployed`` looks up
    (None when not deployed) may deploy ``spec``.

    Raises:
        ConfigError: inconsistent canary labels.
        DeployError: a canary of a function not deployed or of a canary, or an update that
            turns a canary into a function or a function into a canary.
    """
    target = canary_of(spec)
    existing = deployed(spec.name)
    if existing is not None and (canary_of(existing) is not None) != (target is not None):
        raise DeployError(f"{spec.name}: a canary cannot become a function, nor back")
    if target is None:
        return None
    primary = deployed(target[0])
    if primary is None:
        raise DeployError(f"{spec.name}: its function {target[0]!r} is not deployed")
    if canary_of(primary) is not None:
        raise DeployError(f"{spec.name}: {target[0]!r} is a canary; a canary has no canary")
    return target


@dataclass
class CanaryRoute:
    """Which calls of a function its canary takes (see the module docstring).

    Args:
        canary: the canary's function name.
        share: the most of the function's calls the canary may take, in (0, 1].
    """

    canary: str
    share: float
    calls: int = 0  # calls of the function since the canary was deployed
    routed: int = 0  # of them, those the canary took

    def take(self, canary_free: bool) -> bool:
        """Count one call of the function; True when it goes to the canary."""
        self.calls += 1
        if canary_free and self.routed + 1 <= self.share * self.calls + 1e-9:
            self.routed += 1
            return True
        return False


def set_canary(
    platform: Platform, name: str, limits: Limits, *, share: float = DEFAULT_SHARE
) -> str:
    """Deploy (or re-limit) the canary of function ``name`` on ``platform``; returns its name.

    Raises:
        FunctionNotFound: ``name`` is not deployed.
        ConfigError: see :func:`canary_spec`.
        PlatformError: the platform does not say it routes canaries and counts their
            calls (``runs_canaries``): behind a real OpenFaaS gateway it does not.
    """
    if not getattr(platform, "runs_canaries", False):
        raise PlatformError(
            f"{name}: canaries need the testbed's gateway or the simulator; this platform "
            "would not count their calls apart"
        )
    status = platform.status(name)
    spec = canary_spec(replace(status.spec, limits=status.limits), limits, share=share)
    platform.deploy(spec)
    return spec.name


def end_canary(platform: Platform, name: str) -> bool:
    """Remove the canary of function ``name``; False when it had none."""
    try:
        platform.remove(canary_name(name))
    except FunctionNotFound:
        return False
    return True
