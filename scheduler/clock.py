"""Clocks injected into the daemon: wall time for live runs, manual time for sims and tests."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "SimClock", "WallClock"]


class Clock(Protocol):
    """Seconds as a float, and a way to wait until a given time."""

    def now(self) -> float: ...

    def sleep_until(self, t_s: float, stop: threading.Event | None = None) -> bool:
        """Wait until ``now() >= t_s``; return False if ``stop`` was set first."""
        ...


class WallClock:
    """Real time (``time.time()``); waits are interruptible through ``stop``."""

    def now(self) -> float:
        return time.time()

    def sleep_until(self, t_s: float, stop: threading.Event | None = None) -> bool:
        delay = t_s - time.time()
        if delay <= 0:
            return not (stop and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


class SimClock:
    """Manually advanced time: ``sleep_until`` jumps the clock forward instantly."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)

    def now(self) -> float:
        return self._now

    def advance(self, dt_s: float) -> None:
        if dt_s < 0:
            raise ValueError("time cannot go backwards")
        self._now += dt_s

    def set(self, t_s: float) -> None:
        if t_s < self._now:
            raise ValueError("time cannot go backwards")
        self._now = t_s

    def sleep_until(self, t_s: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return False
        if t_s > self._now:
            self._now = t_s
        return True
