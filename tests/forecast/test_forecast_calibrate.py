"""Online conformal calibration: empirical coverage within ±3 points of nominal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.forecast.calibrate import ConformalCalibrator
from scheduler.forecast.naive import EwmaForecaster
from tests.forecast.patterns import periodic_rate, poisson


def _run(std_scale: float, seed: int, n: int = 1800) -> dict[float, float]:
    """EWMA one-step forecasts of a periodic Poisson series, spread scaled by ``std_scale``."""
    y = poisson(periodic_rate(n, period=60, base=30.0, amp=20.0), seed)
    cal = ConformalCalibrator(levels=(0.9, 0.95), gamma=0.005, window=300)
    fc = EwmaForecaster(alpha=0.5, window=60)
    hits = {0.9: 0, 0.95: 0}
    scored = 0
    for t in range(30, n):
        fc.update(y[None, t - 30 : t])
        out = fc.predict(1)
        mean, std = float(out.mean[0, 0]), float(out.std[0, 0]) * std_scale
        if t >= 300:
            scored += 1
            for q in hits:
                hits[q] += int(y[t] <= cal.upper(mean, std, q))
        cal.update(mean=mean, std=std, observed=float(y[t]))
    return {q: h / scored for q, h in hits.items()}


@pytest.mark.parametrize("std_scale", [0.3, 1.0, 3.0])  # over-, roughly, under-confident
def test_coverage_within_three_points(std_scale: float) -> None:
    cov = _run(std_scale, seed=11)
    assert abs(cov[0.9] - 0.9) <= 0.03, cov
    assert abs(cov[0.95] - 0.95) <= 0.03, cov


def test_raw_bounds_pass_through_until_enough_scores() -> None:
    cal = ConformalCalibrator(levels=(0.9,), min_scores=5)
    raw = float(cal.upper(10.0, 2.0, 0.9))
    assert raw == pytest.approx(10.0 + 1.2815515655 * 2.0)
    for _ in range(5):
        cal.update(mean=10.0, std=2.0, observed=20.0)  # forecasts far too low
    assert float(cal.upper(10.0, 2.0, 0.9)) >= 20.0


def test_state_round_trips_through_json() -> None:
    cal = ConformalCalibrator(levels=(0.9, 0.95))
    rng = np.random.default_rng(0)
    for y in rng.poisson(10, 50):
        cal.update(mean=9.0, std=3.0, observed=float(y))
    twin = ConformalCalibrator(levels=(0.9, 0.95))
    twin.load_state_dict(json.loads(json.dumps(cal.state_dict())))
    assert float(twin.upper(9.0, 3.0, 0.95)) == float(cal.upper(9.0, 3.0, 0.95))
    assert twin.coverage() == cal.coverage()


def test_upper_many_matches_upper_level_by_level() -> None:
    rng = np.random.default_rng(3)
    cal = ConformalCalibrator(levels=(0.9,), window=200)
    for _ in range(300):
        mean = float(rng.uniform(0.0, 40.0))
        cal.update(mean=mean, std=1.0, observed=float(rng.poisson(mean)))
    cal.track(0.97)
    means = np.array([0.2, 3.0, 3.0, 20.0, 80.0])
    qs = (0.05, 0.5, 0.9, 0.97, 0.9975)
    many = cal.upper_many(means, np.ones_like(means), qs)
    assert many.shape == (len(qs), means.size)
    for i, q in enumerate(qs):
        np.testing.assert_allclose(many[i], cal.upper(means, np.ones_like(means), q))
    fresh = ConformalCalibrator()  # too few scores: the normal quantile, row by row too
    np.testing.assert_allclose(fresh.upper_many(means, 2.0, qs)[2], fresh.upper(means, 2.0, 0.9))
