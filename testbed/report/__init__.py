"""Reports: every metric defined once, computed from results files, shown as tables and plots.

Modules: ``metrics`` (QoS violations, cold starts, latency percentiles, overhead), ``cost``
(both pricing models, idle replicas charged, wasted memory), ``compare`` (means and
t-intervals across seeds, paired ratios to a baseline), ``tables`` (rich), ``plots``
(matplotlib, Agg) and ``html`` (one self-contained page).
"""

from __future__ import annotations

__all__: list[str] = []
