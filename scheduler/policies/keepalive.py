"""Fixed keep-alive: expire each replica on its own, a fixed window after its last use.

Source: the state-of-the-practice policy that Shahrad et al. (ATC'20, §4.1) call "fixed
keep-alive". Apache OpenWhisk keeps an idle container for 10 minutes
(``containerPool.idleContainer`` / ``unusedTimeout`` default ``10 minutes``) and removes each
container on its own when it has been unused that long; Knative scales a revision to zero
after about 60 s without traffic (the 60 s stable window). AWS Lambda does not document its
keep-alive; published measurements of idle execution environments being reclaimed range from
about 5 to more than 20 minutes, so the ``keepalive-lambda`` preset (15 min) is an assumption.
Scale-up on demand is not this policy's job: the gateway cold-starts a replica when a request
finds none.

Per-replica last-use times are rebuilt from the function's in-flight concurrency
(:mod:`scheduler.policies.slots`): a replica that served one burst of 5 concurrent requests
expires ``window`` after that burst even while replica 1 keeps serving a trickle.

Registered as ``keep-alive`` (``window_s`` parameter, default 600 s), ``keepalive-openwhisk``
(600 s), ``keepalive-lambda`` (900 s) and ``keepalive-knative`` (60 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.policies.slots import SlotTracker
from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["KeepAlivePolicy", "is_active"]

OPENWHISK_WINDOW_S = 600.0
LAMBDA_WINDOW_S = 900.0
KNATIVE_WINDOW_S = 60.0


def is_active(fn: FunctionObservation) -> bool:
    """True when the function saw a request during the tick or has one in the gateway now."""
    return fn.arrivals > 0 or fn.inflight > 0 or fn.completions > 0


@register_policy("keepalive-knative", window_s=KNATIVE_WINDOW_S)
@register_policy("keepalive-lambda", window_s=LAMBDA_WINDOW_S)
@register_policy("keepalive-openwhisk", window_s=OPENWHISK_WINDOW_S)
@register_policy("keep-alive")
class KeepAlivePolicy(Policy):
    """Fixed keep-alive per replica: each replica expires ``window_s`` after its last use.

    Replica slot ``k`` is in use in a tick when the function needed at least ``k`` replicas
    at once during it (:func:`~scheduler.policies.slots.busy_replicas`); its last use is the
    end of that tick (``now_s``). The policy asks for the number of slots used less than
    ``window_s`` ago, so a lost replica inside its window is asked back, and never fewer than
    the replicas serving or starting for queued requests. Replicas found warm the first time
    a function is seen count as used at that moment; a function first seen without replicas
    is left at zero until it is used.

    Args:
        window_s: keep-alive window in seconds (OpenWhisk 600, Knative 60).
    """

    name = "keep-alive"
    description = "Fixed keep-alive: each replica expires a fixed window after its last use."

    def __init__(self, window_s: float = OPENWHISK_WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f"keep-alive: window_s must be positive, got {window_s}")
        self.window_s = float(window_s)
        self._slots = SlotTracker()

    def decide(self, observation: Observation) -> Decision:
        """Keep each replica slot inside its window. See the class docstring."""
        now_s = observation.now_s
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            used = self._slots.observe(fn, now_s, observation.tick_s)
            last = self._slots.last_use(name)
            keep = self._slots.kept(name, now_s, self.window_s)
            if keep == 0:
                reason = (
                    "never used"
                    if last is None
                    else f"idle {now_s - last:.0f}s >= window {self.window_s:.0f}s"
                )
                out[name] = FunctionDecision(replicas=0, reason=reason)
                continue
            out[name] = FunctionDecision(
                replicas=max(keep, used),
                reason=f"{keep} replica(s) used within window {self.window_s:.0f}s",
            )
        self._slots.forget_except(observation.functions)
        return Decision(functions=out, reason=f"keep-alive {self.window_s:g}s")

    def state_dict(self) -> dict[str, Any]:
        """Last-use time per replica slot and in-flight count per function."""
        return self._slots.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._slots.load_state_dict(state)
