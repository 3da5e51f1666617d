"""OpenFaaS Community Edition's default: one replica always on, reactive scale-up on request rate.

Source: OpenFaaS CE autoscaling (docs.openfaas.com, "Autoscaling", legacy/CE section, and
``gateway/handlers/alerthandler.go``). Prometheus evaluates the ``APIHighInvocationRate`` alert,
``sum by (function_name) (rate(gateway_function_invocation_total{code="200"}[10s])) > 5`` with
``for: 5s``; AlertManager re-sends a firing alert every ``repeat_interval`` (30 s in the stack's
config); each firing notification raises the replicas by ``ceil(max * scale_factor / 100)``
up to ``max``; when the alert resolves the gateway sets the replicas back to ``min`` (default
1). Functions never go to zero (CE has no idler). The defaults are those of the CE gateway
this project builds (``gateway/handlers/alerthandler.go`` ``CalculateReplicas`` and
``gateway/scaling/ranges.go``): ``max`` is capped at ``DefaultMaxReplicas`` = 5 and the factor
(``com.openfaas.scale.factor``) defaults to 10 %, so each notification adds one replica, up to
five. The older documented rule (factor 20 %, no cap: +4 of a max of 20) is
``scale_factor_pct=20, replica_cap=None``.

Departures, as the lead asked for them: the threshold is applied to the request rate *per
ready replica* by default (``per_replica=true``; ``per_replica=false`` is the CE rule on the
function's total rate), and scale-down to ``min`` waits ``cooldown_s`` after the alert resolved
instead of happening on the first resolved notification.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["AlwaysOnPolicy"]


class _FnState:
    __slots__ = ("above_since_s", "below_since_s", "last_up_s", "samples", "sum", "target")

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()  # (tick end s, arrivals)
        self.sum = 0
        self.above_since_s: float | None = None
        self.below_since_s: float | None = None
        self.last_up_s: float | None = None
        self.target: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": [list(s) for s in self.samples],
            "above_since_s": self.above_since_s,
            "below_since_s": self.below_since_s,
            "last_up_s": self.last_up_s,
            "target": self.target,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _FnState:
        st = cls()
        st.samples = deque((float(t), int(n)) for t, n in data.get("samples", []))
        st.sum = sum(n for _, n in st.samples)
        st.above_since_s = data.get("above_since_s")
        st.below_since_s = data.get("below_since_s")
        st.last_up_s = data.get("last_up_s")
        st.target = data.get("target")
        return st


@register_policy("always-on")
class AlwaysOnPolicy(Policy):
    """OpenFaaS CE: min one replica, step scale-up while the request rate alert fires.

    Each tick: the request rate is the arrivals of the last ``rate_window_s`` divided by
    ``rate_window_s`` (Prometheus ``rate(...[10s])``). The alert is *pending* while the rate
    (per ready replica when ``per_replica``) exceeds ``threshold_rps`` and *firing* once it has
    done so for ``fire_after_s``. While firing, the target rises by
    ``ceil(max * scale_factor_pct / 100)`` at once and again every ``repeat_s``, up to ``max``,
    the function's max replicas capped at ``replica_cap``. Once the alert has been resolved
    for ``cooldown_s``, the target drops to the minimum (``max(1, min_replicas)``).

    Args:
        threshold_rps: requests per second that trigger the alert (OpenFaaS: 5).
        rate_window_s: window of the rate (OpenFaaS: 10 s).
        fire_after_s: how long the rate must stay above the threshold (OpenFaaS ``for: 5s``).
        repeat_s: interval between scale-up steps while firing (AlertManager repeat, 30 s).
        scale_factor_pct: step as a percentage of the max replicas (OpenFaaS CE: 10).
        cooldown_s: time after the alert resolved before scaling back to the minimum.
        per_replica: compare the rate per ready replica (True) or the total rate (CE rule).
        replica_cap: the most replicas the autoscaler ever asks for (OpenFaaS CE: 5); None
            leaves the function's own max.
    """

    name = "always-on"
    description = "OpenFaaS CE: min 1 replica, scale up in steps while a request-rate alert fires."

    def __init__(
        self,
        threshold_rps: float = 5.0,
        rate_window_s: float = 10.0,
        fire_after_s: float = 5.0,
        repeat_s: float = 30.0,
        scale_factor_pct: float = 10.0,
        cooldown_s: float = 30.0,
        per_replica: bool = True,
        replica_cap: int | None = 5,
    ) -> None:
        if not threshold_rps > 0:
            raise ValueError(f"always-on: threshold_rps must be positive, got {threshold_rps}")
        if not rate_window_s > 0:
            raise ValueError(f"always-on: rate_window_s must be positive, got {rate_window_s}")
        if min(fire_after_s, repeat_s, cooldown_s) < 0:
            raise ValueError("always-on: fire_after_s, repeat_s and cooldown_s must be >= 0")
        if not 0 < scale_factor_pct <= 100:
            raise ValueError(
                f"always-on: scale_factor_pct must be in (0, 100], got {scale_factor_pct}"
            )
        self.threshold_rps = float(threshold_rps)
        self.rate_window_s = float(rate_window_s)
        self.fire_after_s = float(fire_after_s)
        self.repeat_s = float(repeat_s)
        self.scale_factor_pct = float(scale_factor_pct)
        self.cooldown_s = float(cooldown_s)
        self.per_replica = bool(per_replica)
        if replica_cap is not None and int(replica_cap) < 1:
            raise ValueError(f"always-on: replica_cap must be >= 1 or None, got {replica_cap}")
        self.replica_cap = None if replica_cap is None else int(replica_cap)
        self._fns: dict[str, _FnState] = {}

    def _rate_rps(self, st: _FnState, fn: FunctionObservation, now_s: float) -> float:
        st.samples.append((now_s, fn.arrivals))
        st.sum += fn.arrivals
        horizon = now_s - self.rate_window_s
        while st.samples and st.samples[0][0] <= horizon:
            st.sum -= st.samples.popleft()[1]
        return st.sum / self.rate_window_s

    def decide(self, observation: Observation) -> Decision:
        """Step the alert state machine of every function. See the class docstring."""
        now_s = observation.now_s
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            st = self._fns.get(name)
            if st is None:
                st = self._fns[name] = _FnState()
            lo = max(1, fn.min_replicas)
            top = (
                fn.max_replicas
                if self.replica_cap is None
                else min(fn.max_replicas, self.replica_cap)
            )
            hi = max(lo, top)
            if st.target is None:
                st.target = min(hi, max(lo, fn.target_replicas))
            rate = self._rate_rps(st, fn, now_s)
            per = rate / max(1, fn.replicas_ready) if self.per_replica else rate
            what = "per replica" if self.per_replica else "total"
            if per > self.threshold_rps:
                st.below_since_s = None
                if st.above_since_s is None:
                    st.above_since_s = now_s
                firing = now_s - st.above_since_s >= self.fire_after_s
                due = st.last_up_s is None or now_s - st.last_up_s >= self.repeat_s
                if firing and due and st.target < hi:
                    step = math.ceil(top * self.scale_factor_pct / 100)
                    st.target = min(hi, st.target + max(1, step))
                    st.last_up_s = now_s
                    reason = f"alert firing: {per:.1f} rps {what} > {self.threshold_rps:g}"
                elif firing:
                    reason = f"alert firing, next step not due: {per:.1f} rps {what}"
                else:
                    reason = f"alert pending: {per:.1f} rps {what} > {self.threshold_rps:g}"
            else:
                st.above_since_s = None
                st.last_up_s = None
                if st.below_since_s is None:
                    st.below_since_s = now_s
                quiet_s = now_s - st.below_since_s
                if st.target > lo and quiet_s >= self.cooldown_s:
                    st.target = lo
                    reason = f"alert resolved {quiet_s:.0f}s ago: back to min {lo}"
                else:
                    reason = f"{per:.1f} rps {what} <= {self.threshold_rps:g}"
            st.target = min(hi, max(lo, st.target))
            out[name] = FunctionDecision(replicas=st.target, reason=reason)
        for gone in set(self._fns) - set(observation.functions):
            del self._fns[gone]
        return Decision(functions=out, reason="openfaas-ce alert autoscaling")

    def state_dict(self) -> dict[str, Any]:
        """Per-function rate samples and alert state."""
        return {"functions": {k: v.to_json() for k, v in self._fns.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        fns = dict(state.get("functions", {}))
        self._fns = {str(k): _FnState.from_json(v) for k, v in fns.items()}
