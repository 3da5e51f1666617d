"""Aggregate runs across seeds: means with 95% t-intervals, and ratios against a baseline.

Runs are grouped by policy label. For each headline metric (:data:`HEADLINE`) a group gets the
mean over its seeds and a two-sided Student-t confidence interval
``mean ± t(0.975, n-1) · s / sqrt(n)`` (no interval with one seed). Ratios against the
baseline are paired by seed — every policy replays the identical trace for a given seed — so a
ratio's interval is the t-interval of the per-seed ratios; seeds whose baseline value is zero
(or missing) are left out of that ratio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.core.errors import ConfigError
from testbed.experiment.results import find_runs
from testbed.report.metrics import HEADLINE, RunMetrics
from testbed.report.metrics_cache import load_run_metrics

__all__ = ["Comparison", "Estimate", "PolicySummary", "compare_runs", "load_metrics", "t_interval"]


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with the half-width of its confidence interval (NaN if n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Iterable[float], confidence: float = 0.95) -> Estimate:
    """Mean and Student-t confidence half-width of ``values`` (NaNs dropped).

    Returns:
        ``Estimate(nan, nan, 0)`` for no values; a NaN half-width for one value.
    """
    arr = np.asarray([v for v in values if v == v], dtype="float64")
    n = int(arr.size)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(mean, math.nan, 1)
    from scipy.stats import t as student_t

    sd = float(arr.std(ddof=1))
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, half, n)


@dataclass(frozen=True)
class PolicySummary:
    """One policy across its seeds."""

    label: str
    seeds: tuple[int, ...]
    runs: tuple[RunMetrics, ...]
    metrics: dict[str, Estimate]
    ratios: dict[str, Estimate] = field(default_factory=dict)
    requests: int = 0


@dataclass(frozen=True)
class Comparison:
    """Every policy's summary, in first-seen order, and the baseline used for ratios."""

    policies: tuple[PolicySummary, ...]
    baseline: str | None
    confidence: float = 0.95

    def get(self, label: str) -> PolicySummary:
        for summary in self.policies:
            if summary.label == label:
                return summary
        raise KeyError(label)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (NaN as None)."""

        def num(x: float) -> float | None:
            return None if x != x else x

        def est(e: Estimate) -> dict[str, object]:
            return {"mean": num(e.mean), "half_width": num(e.half_width), "n": e.n}

        return {
            "baseline": self.baseline,
            "confidence": self.confidence,
            "policies": [
                {
                    "label": p.label,
                    "seeds": list(p.seeds),
                    "requests": p.requests,
                    "metrics": {k: est(v) for k, v in p.metrics.items()},
                    "ratios": {k: est(v) for k, v in p.ratios.items()},
                }
                for p in self.policies
            ],
        }


def load_metrics(paths: Sequence[str | Path]) -> list[RunMetrics]:
    """Find every complete run under ``paths`` and compute its metrics.

    Raises:
        ConfigError: a path holds no complete run, or a file is malformed.
    """
    return [load_run_metrics(p) for p in find_runs(paths)]


def compare_runs(
    runs: Sequence[RunMetrics], *, baseline: str | None = None, confidence: float = 0.95
) -> Comparison:
    """Group runs by label and summarise them.

    Args:
        runs: per-run metrics (any order).
        baseline: label to compute ratios against; default the first policy (config order).
        confidence: level of the t-intervals.

    Raises:
        ConfigError: ``baseline`` names no label present.
    """
    groups: dict[str, list[RunMetrics]] = {}
    for run in sorted(runs, key=lambda r: r.order):  # stable: config order, then path order
        groups.setdefault(run.label, []).append(run)
    if not groups:
        raise ConfigError("no runs to compare")
    if baseline is None:
        baseline = next(iter(groups))
    if baseline not in groups:
        raise ConfigError(f"baseline {baseline!r} not among the runs ({', '.join(groups)})")
    base_by_seed = {r.seed: r.headline() for r in groups[baseline]}
    summaries = []
    for label, members in groups.items():
        members = sorted(members, key=lambda r: r.seed)
        heads = [r.headline() for r in members]
        metrics = {h.key: t_interval([x[h.key] for x in heads], confidence) for h in HEADLINE}
        ratios: dict[str, Estimate] = {}
        for h in HEADLINE:
            per_seed = []
            for run, head in zip(members, heads, strict=True):
                base = base_by_seed.get(run.seed, {}).get(h.key, math.nan)
                if base == base and base != 0 and head[h.key] == head[h.key]:
                    per_seed.append(head[h.key] / base)
            ratios[h.key] = t_interval(per_seed, confidence)
        summaries.append(
            PolicySummary(
                label=label,
                seeds=tuple(r.seed for r in members),
                runs=tuple(members),
                metrics=metrics,
                ratios=ratios,
                requests=sum(r.requests for r in members),
            )
        )
    return Comparison(tuple(summaries), baseline, confidence)
