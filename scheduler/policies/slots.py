"""Per-replica last-use times derived from a function's in-flight concurrency, tick by tick.

The observation carries no per-replica busy flags, only per-function counts (arrivals,
completions, requests in the gateway at the end of the tick). Keep-alive as OpenWhisk and
Lambda implement it expires *each container* on its own, ``window`` after its last use, so
the policies here rebuild per-replica last-use times from those counts.

Approximation:

* **replica slots**: replicas are numbered 1, 2, ... and a tick that needed ``u`` replicas
  at once used slots ``1..u``. This is exact for the gateway's and the simulator's routing
  (the first ready replica with a free slot takes the call, and scale-down removes the least
  recently used idle replica first), so slot ``k`` is the ``k``-th most recently used replica.
  Slot ``k``'s last use is then the last tick whose concurrency reached ``k``, and the number
  of replicas to keep is the number of slots used within the window: a sliding-window
  maximum of the per-tick concurrency.
* **per-tick concurrency**: the peak number of requests in the gateway during the tick is
  estimated as the largest of the in-flight count at its end, the requests in flight at its
  start that are still in flight or finished in it, and
  ``ceil(arrivals · mean_service_s / tick_s)`` (Little's law; at least 1 when a request
  arrived or completed). Short requests that overlapped inside one tick without showing in
  either snapshot are under-counted; the platform's own on-demand scale-out still starts the
  replicas they need, and those are counted from ``replicas_ready + replicas_starting``
  while requests are queued.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scheduler.policy import FunctionObservation

__all__ = ["SlotTracker", "busy_replicas"]


def busy_replicas(fn: FunctionObservation, prev_inflight: int, tick_s: float) -> int:
    """Replicas the function needed at once during the tick (see the module docstring).

    Args:
        fn: this tick's observation of the function.
        prev_inflight: requests in the gateway at the end of the previous tick.
        tick_s: the tick length in seconds.

    Returns:
        Estimated peak replicas in use (0 when the function was idle all tick).
    """
    per = max(1, fn.max_inflight)
    # requests in flight at the start of the tick are still in flight or finished in it
    conc = max(fn.inflight, min(prev_inflight, fn.inflight + fn.completions + fn.errors))
    if fn.arrivals > 0 or fn.completions > 0:
        conc = max(conc, 1)
        if fn.mean_service_s is not None and tick_s > 0:
            conc = max(conc, math.ceil(fn.arrivals * fn.mean_service_s / tick_s - 1e-9))
    need = math.ceil(conc / per)
    if fn.queued > 0:  # replicas the platform started for queued requests are in use
        need = max(need, fn.replicas_ready + fn.replicas_starting)
    return need


class SlotTracker:
    """Last-use time of each replica slot of each function.

    ``last_use_s[name][k]`` is the last time slot ``k + 1`` was in use; the list is
    non-increasing (a slot is only used when all lower slots are).
    """

    def __init__(self) -> None:
        self.last_use_s: dict[str, list[float]] = {}
        self.prev_inflight: dict[str, int] = {}

    def observe(self, fn: FunctionObservation, now_s: float, tick_s: float) -> int:
        """Record the tick's use of function ``fn`` and return the replicas it needed."""
        name = fn.name
        first = name not in self.last_use_s
        slots = self.last_use_s.setdefault(name, [])
        used = busy_replicas(fn, self.prev_inflight.get(name, 0), tick_s)
        if first:  # replicas found warm: their window starts now
            used = max(used, fn.replicas_ready + fn.replicas_starting)
        self.prev_inflight[name] = fn.inflight
        for k in range(used):
            if k < len(slots):
                slots[k] = now_s
            else:
                slots.append(now_s)
        return used

    def kept(self, name: str, now_s: float, window_s: float) -> int:
        """Slots of ``name`` used less than ``window_s`` ago."""
        return sum(1 for t in self.last_use_s.get(name, ()) if now_s - t < window_s)

    def last_use(self, name: str) -> float | None:
        """When slot 1 (the function as a whole) was last used, or None."""
        slots = self.last_use_s.get(name)
        return slots[0] if slots else None

    def forget_except(self, names: Mapping[str, Any]) -> None:
        """Drop functions that are no longer deployed."""
        for gone in set(self.last_use_s) - set(names):
            del self.last_use_s[gone]
            self.prev_inflight.pop(gone, None)

    def state_dict(self) -> dict[str, Any]:
        return {"last_use_s": dict(self.last_use_s), "prev_inflight": dict(self.prev_inflight)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_use_s = {
            str(k): [float(t) for t in v] for k, v in dict(state.get("last_use_s", {})).items()
        }
        self.prev_inflight = {
            str(k): int(v) for k, v in dict(state.get("prev_inflight", {})).items()
        }
