"""Change detection for online re-tuning: a two-sided CUSUM on a standardised signal.

The detector first learns a reference mean and spread from ``reference`` observations, then
accumulates standardised deviations beyond a slack ``drift`` (in standard deviations) in
both directions; an alarm fires when either sum passes ``threshold``. Pure: values in,
booleans out.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CusumDetector"]


class CusumDetector:
    """Two-sided CUSUM (Page, 1954) with a learned reference.

    Args:
        reference: observations used to estimate the in-control mean and spread.
        drift: slack per observation, in reference standard deviations.
        threshold: alarm level of either cumulative sum, in standard deviations.
        min_std: floor of the reference spread (in the signal's units), so a constant
            reference does not make every wiggle an alarm.
    """

    def __init__(
        self,
        *,
        reference: int = 20,
        drift: float = 1.0,
        threshold: float = 8.0,
        min_std: float = 0.05,
    ) -> None:
        if reference < 2 or drift < 0 or threshold <= 0 or min_std <= 0:
            raise ValueError("need reference >= 2, drift >= 0, threshold > 0, min_std > 0")
        self.reference = reference
        self.drift = drift
        self.threshold = threshold
        self.min_std = min_std
        self.reset()

    def reset(self) -> None:
        """Forget the reference and the sums."""
        self._ref: list[float] = []
        self.mean = math.nan
        self.std = math.nan
        self.high = 0.0
        self.low = 0.0

    @property
    def ready(self) -> bool:
        return len(self._ref) >= self.reference

    def update(self, value: float) -> bool:
        """Feed one observation; True when a change is detected (then call :meth:`reset`)."""
        if not math.isfinite(value):
            return False
        if not self.ready:
            self._ref.append(value)
            if self.ready:
                n = len(self._ref)
                self.mean = sum(self._ref) / n
                var = sum((x - self.mean) ** 2 for x in self._ref) / (n - 1)
                self.std = max(math.sqrt(var), self.min_std)
            return False
        z = (value - self.mean) / self.std
        self.high = max(0.0, self.high + z - self.drift)
        self.low = max(0.0, self.low - z - self.drift)
        return self.high > self.threshold or self.low > self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {"ref": list(self._ref), "high": self.high, "low": self.low}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        for x in state.get("ref", []):
            self.update(float(x))
        self.high = float(state.get("high", 0.0))
        self.low = float(state.get("low", 0.0))
