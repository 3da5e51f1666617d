"""Adapt a send schedule to Locust's ``LoadTestShape`` for the web UI.

The web UI's users each send one request per second (``constant_throughput(1)``), so the
shape asks for as many users as the schedule's rate over the current window. This is the
Locust-native, closed-loop way to follow a trace by hand; experiments use the open-loop
dispatcher in :mod:`loadgen.run` instead.

Imports Locust: import this module only inside a load-generator process.
"""

from __future__ import annotations

import math

import numpy as np
from locust import LoadTestShape

from loadgen.schedule import Schedule

__all__ = ["make_shape_class"]


class _ScheduleShape(LoadTestShape):
    rates_per_s: np.ndarray = np.zeros(0)
    bin_s: float = 10.0
    loop: bool = True
    abstract = True

    def tick(self) -> tuple[int, float] | None:
        """(users, spawn rate) for now; ``None`` once the trace ends (unless looping)."""
        if self.rates_per_s.size == 0:
            return None
        i = int(self.get_run_time() // self.bin_s)  # type: ignore[no-untyped-call]
        if i >= self.rates_per_s.size:
            if not self.loop:
                return None
            i %= self.rates_per_s.size
        users = max(0, math.ceil(float(self.rates_per_s[i]) - 1e-9))
        return users, float(max(1, users))


def make_shape_class(
    schedule: Schedule, *, bin_s: float = 10.0, loop: bool = True
) -> type[LoadTestShape]:
    """A ``LoadTestShape`` subclass that follows ``schedule``'s rate in ``bin_s`` windows.

    Args:
        schedule: the send schedule.
        bin_s: averaging window; users change at most once per window.
        loop: start over when the trace ends instead of stopping.
    """
    return type(
        "TraceShape",
        (_ScheduleShape,),
        {
            "rates_per_s": schedule.rates(bin_s),
            "bin_s": bin_s,
            "loop": loop,
            "abstract": False,
            "__doc__": f"Follows the trace's request rate ({len(schedule)} requests over "
            f"{schedule.duration_s:.0f} s) in {bin_s:g} s steps.",
        },
    )
