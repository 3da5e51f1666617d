"""Synthetic count patterns with known structure, shared by the forecaster tests."""

from __future__ import annotations

import numpy as np

__all__ = ["onoff_rate", "periodic_rate", "poisson"]


def periodic_rate(n: int, *, period: int = 24, base: float = 20.0, amp: float = 12.0) -> np.ndarray:
    """A sinusoidal arrival rate per step."""
    t = np.arange(n, dtype=np.float64)
    return base + amp * np.sin(2 * np.pi * t / period)


def poisson(rate: np.ndarray, seed: int) -> np.ndarray:
    """Poisson counts of ``rate`` (1-D), as floats."""
    return np.random.default_rng(seed).poisson(rate).astype(np.float64)


def onoff_rate(n: int, *, seed: int, high: float = 40.0, on: int = 6, off: int = 18) -> np.ndarray:
    """On/off bursts: ``high`` during on periods, 0 otherwise (geometric period lengths)."""
    rng = np.random.default_rng(seed)
    rate = np.zeros(n)
    t, state = 0, False
    while t < n:
        length = int(rng.geometric(1.0 / (on if state else off)))
        if state:
            rate[t : t + length] = high
        t += length
        state = not state
    return rate
