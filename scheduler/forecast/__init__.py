"""Demand forecasters (per-step arrival counts with uncertainty), calibration and pool sizing.

``make_forecaster(name, ...)`` builds one by name; torch/gpytorch models are imported only
when built, so importing this package stays light.
"""

from __future__ import annotations

from typing import Any

from scheduler.forecast.base import DEFAULT_LEVELS, Forecast, Forecaster, as_history
from scheduler.forecast.calibrate import ConformalCalibrator
from scheduler.forecast.naive import EwmaForecaster, LastValueForecaster, SeasonalNaiveForecaster

__all__ = [
    "DEFAULT_LEVELS",
    "FORECASTERS",
    "ConformalCalibrator",
    "EwmaForecaster",
    "Forecast",
    "Forecaster",
    "LastValueForecaster",
    "SeasonalNaiveForecaster",
    "as_history",
    "make_forecaster",
]

FORECASTERS = ("last", "ewma", "seasonal", "gp", "lstm")


def make_forecaster(name: str, **options: Any) -> Forecaster:
    """Build forecaster ``name`` (one of :data:`FORECASTERS`) with keyword ``options``.

    Raises:
        ValueError: unknown name.
    """
    if name == "last":
        return LastValueForecaster(**options)
    if name == "ewma":
        return EwmaForecaster(**options)
    if name == "seasonal":
        return SeasonalNaiveForecaster(**options)
    if name == "gp":
        from scheduler.forecast.gp import GPForecaster

        return GPForecaster(**options)
    if name == "lstm":
        from scheduler.forecast.lstm import HybridBayesianForecaster

        return HybridBayesianForecaster(**options)
    raise ValueError(f"unknown forecaster {name!r}; known: {', '.join(FORECASTERS)}")
