"""Apply a :class:`Decision` to a platform: diff against status, clamp, call only on change.

Like Knative's KPA scaler (``applyBounds``), the actuator owns the last step between a
policy's wish and the platform: replica targets are clamped to the function's scale bounds
(``com.openfaas.scale.min/max``), and ``scale`` / ``set_limits`` are called only when the
clamped target differs from the platform's, or when the platform's target already matches but
fewer replicas are alive than promised (a replica died: the target is re-asserted). An
invalid decision changes nothing. Every call is logged and returned as an :class:`Action`;
a platform error (or a canary it cannot run) is recorded on its action and never raised,
so one bad answer cannot stop the daemon (the next tick diffs again and retries). A
decision may also run, re-limit or end a function's canary (``testbed.core.canary``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.policy import Decision, FunctionDecision
from testbed.core.canary import canary_name, canary_of, end_canary, set_canary
from testbed.core.config import Limits
from testbed.core.errors import TestbedError
from testbed.core.platform import FunctionStatus, Platform

__all__ = ["Action", "actuate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """One platform call the actuator made (or skipped).

    Args:
        kind: ``scale``, ``set_limits``, ``set_canary`` or ``end_canary`` (or ``skip`` for a
            decision on an unknown function).
        function: function name.
        before: the platform's value before the call (replicas, or limits as a dict).
        after: the value asked for.
        ok: whether the call succeeded.
        error: the error text when it did not.
        detail: why the call was made (``clamped``, ``re-assert``...).
    """

    kind: str
    function: str
    before: Any
    after: Any
    ok: bool = True
    error: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """A dict for ``decisions.jsonl``."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "function": self.function,
            "before": self.before,
            "after": self.after,
            "ok": self.ok,
        }
        if self.error:
            out["error"] = self.error
        if self.detail:
            out["detail"] = self.detail
        return out


def _limits_json(limits: Limits) -> dict[str, Any]:
    return {"cpu_cores": limits.cpu_cores, "memory_mb": limits.memory_mb}


def actuate(
    platform: Platform, decision: Decision, statuses: Mapping[str, FunctionStatus]
) -> list[Action]:
    """Make the platform match ``decision``; return the calls made.

    Args:
        platform: where to apply the decision.
        decision: the policy's decision (nothing happens when it is invalid).
        statuses: the platform's current status per function name (from this tick).

    Returns:
        One :class:`Action` per call attempted, in order; failed calls have ``ok=False``.
    """
    actions: list[Action] = []
    if not decision.valid:
        log.info("decision declined (%s): nothing actuated", decision.reason)
        return actions
    for name, fd in decision.functions.items():
        status = statuses.get(name)
        if status is None:
            if fd.replicas is not None or fd.limits is not None:
                actions.append(Action("skip", name, None, None, ok=False, error="not deployed"))
                log.warning("decision for %s skipped: function not deployed", name)
            continue
        if fd.limits is not None:
            wanted = status.limits.merged(fd.limits)
            if wanted != status.limits:
                actions.append(
                    _call(
                        "set_limits",
                        name,
                        _limits_json(status.limits),
                        _limits_json(wanted),
                        lambda n=name, w=wanted: platform.set_limits(n, w),
                    )
                )
        actions.extend(_canary_actions(platform, name, fd, status, statuses))
        if fd.replicas is not None:
            target = status.spec.scale_bounds.clamp(fd.replicas)
            alive = status.replicas_ready + status.replicas_starting
            detail = "clamped" if target != fd.replicas else ""
            if target != status.target_replicas:
                pass
            elif target > alive:
                detail = f"re-assert ({alive} alive)"
            else:
                continue
            actions.append(
                _call(
                    "scale",
                    name,
                    status.target_replicas,
                    target,
                    lambda n=name, t=target: platform.scale(n, replicas=t),
                    detail=detail,
                )
            )
    return actions


def _canary_actions(
    platform: Platform,
    name: str,
    fd: FunctionDecision,
    status: FunctionStatus,
    statuses: Mapping[str, FunctionStatus],
) -> list[Action]:
    """Run, re-limit or end the canary of ``name`` as ``fd`` says (nothing when it agrees)."""
    running = statuses.get(canary_name(name))
    if fd.end_canary and running is not None:
        was = _limits_json(running.limits)
        return [_call("end_canary", name, was, None, lambda: end_canary(platform, name))]
    if fd.canary is None:
        return []
    wanted = status.limits.merged(fd.canary)
    target = canary_of(running.spec) if running is not None else None
    if running is not None and running.limits == wanted and target == (name, fd.canary_share):
        return []
    before = _limits_json(running.limits) if running is not None else None
    share = fd.canary_share
    return [
        _call(
            "set_canary",
            name,
            before,
            {**_limits_json(wanted), "share": share},
            lambda: set_canary(platform, name, wanted, share=share),
        )
    ]


def _call(kind: str, name: str, before: Any, after: Any, call: Any, *, detail: str = "") -> Action:
    try:
        call()
    except TestbedError as exc:  # a platform's refusal, or a canary it cannot name
        log.warning("%s %s %s -> %s failed: %s", kind, name, before, after, exc)
        return Action(kind, name, before, after, ok=False, error=str(exc), detail=detail)
    log.info("%s %s: %s -> %s %s", kind, name, before, after, detail)
    return Action(kind, name, before, after, detail=detail)
