"""End-to-end latency of workflow requests as a fine histogram: recorded by the platforms,
differenced by the scheduler's observer into one tick's latencies.

Buckets are 5 % apart (geometric) from 1 ms to about 300 s, so a latency read back as its bucket's
geometric midpoint is within 2.5 % of what was measured: close enough to judge a QoS target,
and bounded in size however many requests a tick sees (the Prometheus way: a platform exports
cumulative bucket counts, the reader differences two scrapes). A failed request counts as
infinitely slow: it met no target.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "WORKFLOW_LATENCY_BUCKETS_S",
    "LatencyHistogram",
    "WorkflowMetrics",
    "latencies_between",
]

_RATIO = 1.05
WORKFLOW_LATENCY_BUCKETS_S: tuple[float, ...] = tuple(
    round(0.001 * _RATIO**i, 9) for i in range(int(math.log(300_000) / math.log(_RATIO)) + 1)
)
"""Upper bounds (seconds) of the histogram's finite buckets; one more bucket holds the rest."""

# what each bucket reads back as: its geometric midpoint (a bucket's lower bound is the one
# below it, or the first bound over the ratio), and inf for the last one
_UPPER = np.asarray(WORKFLOW_LATENCY_BUCKETS_S, dtype=np.float64)
_LOWER = np.concatenate(([_UPPER[0] / _RATIO], _UPPER[:-1]))
_READ_BACK_S = np.append(np.sqrt(_LOWER * _UPPER), math.inf)
_READ_BACK: list[float] = _READ_BACK_S.tolist()


@dataclass(frozen=True)
class WorkflowMetrics:
    """Cumulative end-to-end figures of one workflow's requests (since the platform started).

    Attributes:
        completed: requests finished, whatever their status.
        errors: of which failed.
        latency_counts: requests per bucket of :data:`WORKFLOW_LATENCY_BUCKETS_S`
            (not cumulative), then one count for slower ones and failed ones; empty when
            the platform does not measure latency.
    """

    completed: int = 0
    errors: int = 0
    latency_counts: tuple[int, ...] = ()


class LatencyHistogram:
    """A platform's running histogram of one workflow (not thread-safe: one event loop)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(WORKFLOW_LATENCY_BUCKETS_S) + 1)
        self.completed = 0
        self.errors = 0

    def add(self, latency_s: float, *, ok: bool) -> None:
        """Record one finished request (a failed one lands in the last bucket)."""
        self.completed += 1
        if not ok:
            self.errors += 1
            self.counts[-1] += 1
            return
        self.counts[bisect.bisect_left(WORKFLOW_LATENCY_BUCKETS_S, latency_s)] += 1

    def snapshot(self) -> WorkflowMetrics:
        """The cumulative figures now."""
        return WorkflowMetrics(self.completed, self.errors, tuple(self.counts))


def latencies_between(before: Sequence[int] | None, after: Sequence[int]) -> tuple[float, ...]:
    """Latencies of the requests that finished between two snapshots' bucket counts.

    Each is read as its bucket's geometric midpoint; the last bucket (slower than the largest
    bound, or failed) reads as ``inf``. A bucket whose count went down (the platform
    restarted) counts its new value, as a Prometheus ``increase()`` would.

    Args:
        before: the earlier counts (None: nothing before).
        after: the later counts.
    """
    if before is not None and tuple(before) == tuple(after):
        return ()  # nothing finished (most ticks of a quiet workflow)
    prev = list(before or ())[: len(after)]
    prev += [0] * (len(after) - len(prev))
    last = len(_READ_BACK) - 1
    out: list[float] = []
    for i, (now, was) in enumerate(zip(after, prev, strict=True)):
        new = now - was if now >= was else now  # a count that went down: a restart
        if new:
            out.extend([_READ_BACK[min(i, last)]] * int(new))
    return tuple(out)
