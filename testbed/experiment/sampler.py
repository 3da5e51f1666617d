"""The resource-timeline sampler: every ``interval_s``, replicas and reservations per function.

Each sample reads ``platform.list()`` (replica states, limits) and ``platform.metrics()``
(in-flight and queued requests) and appends one ``timeline.csv`` row per function
(``docs/results.md``). Reserved CPU and memory per replica are the limit, else the request,
else 1 core and 128 MiB. The sampler runs in its own thread; a failed sample is counted and
skipped, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from testbed.core.platform import FunctionStatus, MetricsSnapshot, Platform
from testbed.experiment.results import TimelineWriter

__all__ = ["DEFAULT_CPU_CORES", "DEFAULT_MEMORY_MB", "TimelineSampler", "timeline_rows"]

log = logging.getLogger(__name__)

DEFAULT_CPU_CORES = 1.0
DEFAULT_MEMORY_MB = 128.0


def timeline_rows(
    t_s: float, listed: list[FunctionStatus], snapshot: MetricsSnapshot | None
) -> list[dict[str, Any]]:
    """One timeline row per function from a platform listing and a metrics snapshot."""
    rows = []
    for status in sorted(listed, key=lambda s: s.name):
        fm = snapshot.functions.get(status.name) if snapshot is not None else None
        inflight = fm.inflight if fm is not None else 0
        queued = fm.queued if fm is not None else 0
        spec = status.spec
        cpu = status.limits.cpu_cores or spec.requests.cpu_cores or DEFAULT_CPU_CORES
        mem = status.limits.memory_mb or spec.requests.memory_mb or DEFAULT_MEMORY_MB
        rows.append(
            {
                "t_s": round(t_s, 4),
                "function": status.name,
                "replicas_ready": status.replicas_ready,
                "replicas_starting": status.replicas_starting,
                "busy": max(0, inflight - queued),
                "queued": queued,
                "cpu_cores": float(cpu),
                "memory_mb": float(mem),
            }
        )
    return rows


class TimelineSampler:
    """Samples a platform into a :class:`TimelineWriter` from a background thread.

    Args:
        platform: the platform to read.
        writer: where rows go.
        t0_unix_s: the run's start; ``t_s`` is relative to it.
        interval_s: seconds between samples (at most 1 for the results schema).
        clock: Unix time source (injectable for tests).
    """

    def __init__(
        self,
        platform: Platform,
        writer: TimelineWriter,
        *,
        t0_unix_s: float,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < interval_s <= 1.0:
            raise ValueError(f"interval_s must be in (0, 1], got {interval_s}")
        self.platform = platform
        self.writer = writer
        self.t0_unix_s = t0_unix_s
        self.interval_s = interval_s
        self.clock = clock
        self.samples = 0
        self.failures = 0
        self.max_gap_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> None:
        """Take one sample now (also usable without the thread)."""
        now = self.clock()
        try:
            listed = self.platform.list()
            snapshot = self.platform.metrics()
        except Exception as exc:  # a sampler must outlive a bad answer
            self.failures += 1
            log.warning("timeline sample failed: %s", exc)
            return
        self.writer.write(timeline_rows(now - self.t0_unix_s, listed, snapshot))
        self.samples += 1

    def _loop(self) -> None:
        next_s = self.clock()
        last = None
        while not self._stop.is_set():
            started = self.clock()
            if last is not None:
                self.max_gap_s = max(self.max_gap_s, started - last)
            last = started
            self.sample_once()
            next_s += self.interval_s
            if next_s < self.clock():
                next_s = self.clock()
            self._stop.wait(max(0.0, next_s - self.clock()))

    def start(self) -> None:
        """Start sampling in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="timeline-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, take a last sample, and close the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample_once()
        self.writer.close()
