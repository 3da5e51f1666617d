"""Fixed keep-alive: keep a function's replicas for a fixed window after its last use.

Source: the state-of-the-practice policy that Shahrad et al. (ATC'20, §4.1) call "fixed
keep-alive". Apache OpenWhisk keeps an idle container for 10 minutes
(``containerPool.idleContainer`` / ``unusedTimeout`` default ``10 minutes``); Knative scales a
revision to zero after about 60 s without traffic (the 60 s stable window). Scale-up on demand is
not this policy's job: the gateway cold-starts a replica when a request finds none.

Registered as ``keep-alive`` (``window_s`` parameter, default 600 s), ``keepalive-openwhisk``
(600 s) and ``keepalive-knative`` (60 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["KeepAlivePolicy", "is_active"]

OPENWHISK_WINDOW_S = 600.0
KNATIVE_WINDOW_S = 60.0


def is_active(fn: FunctionObservation) -> bool:
    """True when the function saw a request during the tick or has one in the gateway now."""
    return fn.arrivals > 0 or fn.inflight > 0 or fn.completions > 0


@register_policy("keepalive-knative", window_s=KNATIVE_WINDOW_S)
@register_policy("keepalive-openwhisk", window_s=OPENWHISK_WINDOW_S)
@register_policy("keep-alive")
class KeepAlivePolicy(Policy):
    """Fixed keep-alive: scale to zero once a function has been idle for ``window_s``.

    A function is *active* in a tick when requests arrived, completed or are in flight; its
    last-active time is the end of that tick (``now_s``). While ``now_s - last_active <
    window_s`` the policy keeps the current target (at least one replica, so a replica lost to
    a crash is replaced); from ``now_s - last_active >= window_s`` on it asks for zero. A
    function first seen with replicas counts as active at that moment (the window starts
    then); one first seen without replicas is left at zero until it is used.

    Args:
        window_s: keep-alive window in seconds (OpenWhisk 600, Knative 60).
    """

    name = "keep-alive"
    description = "Fixed keep-alive window after the last request, then scale to zero."

    def __init__(self, window_s: float = OPENWHISK_WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f"keep-alive: window_s must be positive, got {window_s}")
        self.window_s = float(window_s)
        self._last_active_s: dict[str, float | None] = {}

    def decide(self, observation: Observation) -> Decision:
        """Keep warm inside the window, zero after it. See the class docstring."""
        now_s = observation.now_s
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            last = self._last_active_s.get(name)
            if is_active(fn) or (
                name not in self._last_active_s and fn.replicas_ready + fn.replicas_starting > 0
            ):
                last = now_s
            self._last_active_s[name] = last
            if last is None:
                out[name] = FunctionDecision(replicas=0, reason="never used")
                continue
            idle_s = now_s - last
            if idle_s >= self.window_s:
                out[name] = FunctionDecision(
                    replicas=0, reason=f"idle {idle_s:.0f}s >= window {self.window_s:.0f}s"
                )
            else:
                out[name] = FunctionDecision(
                    replicas=max(1, fn.target_replicas),
                    reason=f"idle {idle_s:.0f}s < window {self.window_s:.0f}s",
                )
        for gone in set(self._last_active_s) - set(observation.functions):
            del self._last_active_s[gone]
        return Decision(functions=out, reason=f"keep-alive {self.window_s:g}s")

    def state_dict(self) -> dict[str, Any]:
        """Last-active time per function (seconds, or None for never used)."""
        return {"last_active_s": dict(self._last_active_s)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._last_active_s = {
            str(k): (None if v is None else float(v))
            for k, v in dict(state.get("last_active_s", {})).items()
        }
