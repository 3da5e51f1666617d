"""Reference forecasters: shapes, known patterns (step, periodic), and input validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scheduler.forecast import (
    EwmaForecaster,
    Forecast,
    Forecaster,
    LastValueForecaster,
    SeasonalNaiveForecaster,
    make_forecaster,
)
from tests.forecast.patterns import periodic_rate, poisson


def test_protocol_and_shapes() -> None:
    hist = np.vstack([poisson(np.full(50, 5.0), 0), poisson(np.full(50, 50.0), 1)])
    for fc in (LastValueForecaster(), EwmaForecaster(), SeasonalNaiveForecaster(period_steps=7)):
        assert isinstance(fc, Forecaster)
        fc.fit(hist)
        out = fc.predict(6)
        assert isinstance(out, Forecast)
        assert out.mean.shape == out.std.shape == (2, 6)
        assert set(out.quantiles) == {0.5, 0.9, 0.95, 0.99}
        q = [out.quantiles[level] for level in (0.5, 0.9, 0.95, 0.99)]
        assert all(np.all(a <= b + 1e-12) for a, b in itertools.pairwise(q))
        assert np.all(out.std[:, 1:] >= out.std[:, :1] - 1e-12)  # spread never shrinks ahead


def test_step_change_is_tracked() -> None:
    hist = np.concatenate([poisson(np.full(60, 10.0), 2), poisson(np.full(20, 40.0), 3)])
    ewma = EwmaForecaster(alpha=0.3)
    ewma.fit(hist)
    assert abs(ewma.predict(1).mean[0, 0] - 40.0) < 6.0
    last = LastValueForecaster()
    last.fit(hist)
    assert last.predict(1).mean[0, 0] == hist[-1]


def test_seasonal_naive_repeats_the_cycle() -> None:
    rate = periodic_rate(24 * 10 + 12, period=24)
    hist = poisson(rate[: 24 * 10], 4)
    fc = SeasonalNaiveForecaster(period_steps=24)
    fc.fit(hist)
    out = fc.predict(12)
    assert np.mean(np.abs(out.mean[0] - rate[24 * 10 :])) < 6.0  # Poisson noise of ~sqrt(20)
    np.testing.assert_array_equal(out.mean[0], hist[-24:-12])


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        EwmaForecaster().fit(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="n_functions x n_steps"):
        EwmaForecaster().fit(np.zeros((1, 2, 3)))
    with pytest.raises(RuntimeError, match="fit"):
        EwmaForecaster().predict(1)
    with pytest.raises(ValueError, match="unknown forecaster"):
        make_forecaster("arima")
