"""Frontiers of (cost, harm) points: the lower envelope and the area between two curves.

A policy with a knob is a curve of points such as (idle replica-seconds, cold-start %): more
of the first should buy less of the second. These helpers compare such curves, e.g. a policy
against the oracle bound, without favouring where either sweep happens to stop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["area_between", "envelope", "envelope_at"]

Point = tuple[float, float]


def envelope(points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
    """Lower (Pareto) envelope of ``(x, y)`` points: a larger ``x`` must buy a smaller ``y``.

    Example:
        >>> xs, ys = envelope([(1, 5), (2, 6), (3, 2)])
        >>> xs.tolist(), ys.tolist()
        ([1.0, 3.0], [5.0, 2.0])
    """
    xs: list[float] = []
    ys: list[float] = []
    best = math.inf
    for x, y in sorted(points):
        if y < best:
            xs.append(float(x))
            ys.append(float(y))
            best = y
    return np.asarray(xs), np.asarray(ys)


def envelope_at(points: Sequence[Point], x: float) -> float | None:
    """The envelope's ``y`` at ``x``: linear between points, flat beyond the last (more ``x``
    never costs it ``y``), None below the first."""
    xs, ys = envelope(points)
    if not len(xs) or x < xs[0] - 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def area_between(curve: Sequence[Point], ref: Sequence[Point]) -> tuple[float, float] | None:
    """``(area, mean gap)`` of ``curve`` above ``ref`` over ``curve``'s ``x`` range from where
    ``ref`` starts (None when the ranges do not overlap). The mean gap is in ``y``'s unit: how
    much more harm ``curve`` pays than ``ref`` at the same cost, on average over the range.

    Example:
        >>> area_between([(0, 4), (10, 2)], [(0, 1), (10, 0)])
        (25.0, 2.5)
    """
    if not curve or not ref:
        return None
    cx, _ = envelope(curve)
    rx, _ = envelope(ref)
    lo = max(cx[0], rx[0])
    hi = max(x for x, _ in curve)
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, 257)
    gap = np.array([(envelope_at(curve, x) or 0.0) - (envelope_at(ref, x) or 0.0) for x in grid])
    area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(grid)))
    return area, area / float(hi - lo)
