"""Knative's concurrency autoscaler (KPA): stable and panic windows over observed concurrency.

Source: Knative Serving, ``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``) and the
documented defaults of the ``config-autoscaler`` ConfigMap (knative.dev/docs, "Configuring
the autoscaler"): ``stable-window: 60s``; ``panic-window-percentage: 10`` (6 s);
``panic-threshold-percentage: 200``; ``max-scale-up-rate: 1000``; ``max-scale-down-rate: 2``;
``container-concurrency-target-percentage: 70`` (a hard ``containerConcurrency`` of *c* gives
a target of 0.7·c per pod); ``scale-to-zero-grace-period: 30s``.

The algorithm, per function and tick:

* observed concurrency of the tick = max(in flight now, busy time of the requests completed in
  the tick / tick length), i.e. the time-weighted concurrency Knative's queue-proxy reports;
* stable / panic averages over the last 60 s / 6 s (time since the function was first seen,
  if shorter);
* desired pods = ceil(average / target) for each window, clamped to
  [floor(ready / max_scale_down_rate), ceil(ready · max_scale_up_rate)] with ready >= 1;
* panic starts when desired_panic / ready >= 2 and lasts until the threshold has not been met
  for a whole stable window; in panic the panic desired count is used and never decreases;
* zero desired pods are applied only after ``scale_to_zero_grace_s`` with no demand; until
  then one replica is held (Knative's scaler keeps the last pod during the grace period).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["KnativeKPAPolicy", "observed_concurrency"]


def observed_concurrency(fn: FunctionObservation, tick_s: float) -> float:
    """Time-weighted concurrency of one tick, as Knative's queue-proxy would report it.

    Args:
        fn: the function's observation for the tick.
        tick_s: tick length in seconds.

    Returns:
        ``max(fn.inflight, completions * mean_service_s / tick_s)`` (requests).
    """
    busy = fn.completions * (fn.mean_service_s or 0.0) / tick_s
    return max(float(fn.inflight), busy)


class _Window:
    """Running time-weighted sum over a sliding window of (end time, value, length) samples."""

    __slots__ = ("samples", "sum", "width_s")

    def __init__(self, width_s: float) -> None:
        self.width_s = width_s
        self.samples: deque[tuple[float, float, float]] = deque()
        self.sum = 0.0

    def add(self, now_s: float, value: float, dt_s: float) -> None:
        self.samples.append((now_s, value, dt_s))
        self.sum += value * dt_s
        horizon = now_s - self.width_s
        while self.samples and self.samples[0][0] <= horizon + 1e-9:
            _, v, dt = self.samples.popleft()
            self.sum -= v * dt
        if not self.samples:
            self.sum = 0.0

    def average(self, seen_s: float) -> float:
        """Average over the window (or over ``seen_s`` when the function is younger)."""
        span = min(self.width_s, seen_s)
        return max(0.0, self.sum) / span if span > 0 else 0.0


class _FnState:
    __slots__ = ("first_s", "last_demand_s", "max_panic", "panic", "panic_since_s", "stable")

    def __init__(self, stable_s: float, panic_s: float, now_s: float) -> None:
        self.stable = _Window(stable_s)
        self.panic = _Window(panic_s)
        self.first_s = now_s
        self.panic_since_s: float | None = None  # Knative's panicTime (extended while over)
        self.max_panic = 0
        self.last_demand_s: float | None = None


@register_policy("knative-kpa")
class KnativeKPAPolicy(Policy):
    """Knative Pod Autoscaler: target concurrency, 60 s stable / 6 s panic windows.

    Args:
        target_concurrency: requests per replica to aim for; ``None`` uses
            ``target_utilization * max_inflight`` (Knative's 70 % of containerConcurrency).
        target_utilization: share of a replica's hard concurrency limit to target.
        stable_window_s: averaging window in normal mode (Knative: 60 s).
        panic_window_s: averaging window for panic detection (Knative: 6 s).
        panic_threshold: desired-panic / ready ratio that starts panic mode (Knative: 2.0).
        max_scale_up_rate: at most ``ceil(ready * rate)`` replicas (Knative: 1000).
        max_scale_down_rate: at least ``floor(ready / rate)`` replicas (Knative: 2).
        scale_to_zero_grace_s: demand-free time before going to zero (Knative: 30 s).
    """

    name = "knative-kpa"
    description = "Knative KPA: target concurrency per replica, 60 s stable / 6 s panic windows."

    def __init__(
        self,
        target_concurrency: float | None = None,
        target_utilization: float = 0.7,
        stable_window_s: float = 60.0,
        panic_window_s: float = 6.0,
        panic_threshold: float = 2.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        scale_to_zero_grace_s: float = 30.0,
    ) -> None:
        if target_concurrency is not None and not target_concurrency > 0:
            raise ValueError(f"knative-kpa: target_concurrency must be > 0: {target_concurrency}")
        if not 0 < target_utilization <= 1:
            raise ValueError(f"knative-kpa: target_utilization in (0, 1]: {target_utilization}")
        if not 0 < panic_window_s <= stable_window_s:
            raise ValueError("knative-kpa: need 0 < panic_window_s <= stable_window_s")
        if not panic_threshold > 1 or not max_scale_up_rate > 1 or not max_scale_down_rate > 1:
            raise ValueError("knative-kpa: panic_threshold and scale rates must be > 1")
        if scale_to_zero_grace_s < 0:
            raise ValueError("knative-kpa: scale_to_zero_grace_s must be >= 0")
        self.target_concurrency = target_concurrency
        self.target_utilization = float(target_utilization)
        self.stable_window_s = float(stable_window_s)
        self.panic_window_s = float(panic_window_s)
        self.panic_threshold = float(panic_threshold)
        self.max_scale_up_rate = float(max_scale_up_rate)
        self.max_scale_down_rate = float(max_scale_down_rate)
        self.scale_to_zero_grace_s = float(scale_to_zero_grace_s)
        self._fns: dict[str, _FnState] = {}

    def _target(self, fn: FunctionObservation) -> float:
        if self.target_concurrency is not None:
            return self.target_concurrency
        return self.target_utilization * fn.max_inflight

    def _decide_one(
        self, st: _FnState, fn: FunctionObservation, now_s: float, tick_s: float
    ) -> FunctionDecision:
        conc = observed_concurrency(fn, tick_s)
        st.stable.add(now_s, conc, tick_s)
        st.panic.add(now_s, conc, tick_s)
        seen_s = now_s - st.first_s + tick_s
        stable_avg = st.stable.average(seen_s)
        panic_avg = st.panic.average(seen_s)
        target = self._target(fn)
        ready = max(1, fn.replicas_ready)
        up_cap = math.ceil(ready * self.max_scale_up_rate)
        down_floor = math.floor(ready / self.max_scale_down_rate)
        stable_want = min(up_cap, max(down_floor, math.ceil(stable_avg / target - 1e-9)))
        panic_want = min(up_cap, max(down_floor, math.ceil(panic_avg / target - 1e-9)))
        if stable_avg <= 0 and panic_avg <= 0:
            stable_want = panic_want = 0  # Knative: no traffic means zero, no rate floor

        over = panic_want / ready >= self.panic_threshold
        if over:
            st.panic_since_s = now_s
        elif st.panic_since_s is not None and now_s - st.panic_since_s >= self.stable_window_s:
            st.panic_since_s = None
            st.max_panic = 0

        if st.panic_since_s is not None:
            st.max_panic = max(st.max_panic, panic_want)
            want = st.max_panic
            reason = (
                f"panic: {panic_avg:.2f} conc over {self.panic_window_s:g}s, "
                f"{panic_want} wanted vs {ready} ready"
            )
        else:
            want = stable_want
            reason = f"stable: {stable_avg:.2f} conc over {self.stable_window_s:g}s / {target:g}"

        if want > 0 or conc > 0:
            st.last_demand_s = now_s
        if want == 0:
            last = st.last_demand_s
            if last is not None and now_s - last < self.scale_to_zero_grace_s:
                want = 1 if fn.target_replicas > 0 or fn.replicas_ready > 0 else 0
                reason += f"; scale-to-zero grace ({now_s - last:.0f}s)"
            else:
                reason += "; scale to zero"
        return FunctionDecision(replicas=want, reason=reason)

    def decide(self, observation: Observation) -> Decision:
        """KPA ``Scale`` for every function. See the module docstring."""
        now_s, tick_s = observation.now_s, observation.tick_s
        out: dict[str, FunctionDecision] = {}
        for name, fn in observation.functions.items():
            st = self._fns.get(name)
            if st is None:
                st = self._fns[name] = _FnState(self.stable_window_s, self.panic_window_s, now_s)
            out[name] = self._decide_one(st, fn, now_s, tick_s)
        for gone in set(self._fns) - set(observation.functions):
            del self._fns[gone]
        return Decision(functions=out, reason="knative kpa")

    def state_dict(self) -> dict[str, Any]:
        """Window samples, panic state and last demand per function."""
        return {
            "functions": {
                name: {
                    "first_s": st.first_s,
                    "samples": [list(s) for s in st.stable.samples],  # panic: rebuilt
                    "panic_since_s": st.panic_since_s,
                    "max_panic": st.max_panic,
                    "last_demand_s": st.last_demand_s,
                }
                for name, st in self._fns.items()
            }
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._fns = {}
        for name, data in dict(state.get("functions", {})).items():
            st = _FnState(self.stable_window_s, self.panic_window_s, float(data["first_s"]))
            samples = [(float(t), float(v), float(dt)) for t, v, dt in data.get("samples", [])]
            horizon = samples[-1][0] - self.panic_window_s if samples else 0.0
            for window in (st.stable, st.panic):
                for t, v, dt in samples:
                    if window is st.panic and t <= horizon + 1e-9:
                        continue  # the panic window is the stable window's recent tail
                    window.samples.append((t, v, dt))
                    window.sum += v * dt
            st.panic_since_s = data.get("panic_since_s")
            st.max_panic = int(data.get("max_panic", 0))
            st.last_demand_s = data.get("last_demand_s")
            self._fns[str(name)] = st
