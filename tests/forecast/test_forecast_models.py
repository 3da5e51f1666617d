"""GP and hybrid Bayesian (LSTM) forecasters recover periodic, step and bursty patterns."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.forecast.gp import GPForecaster, dominant_period
from scheduler.forecast.lstm import HybridBayesianForecaster, calendar_features
from tests.forecast.patterns import onoff_rate, periodic_rate, poisson


def test_dominant_period_found_and_absent() -> None:
    assert dominant_period(periodic_rate(200, period=24)) in (23, 24, 25)
    assert dominant_period(np.random.default_rng(0).normal(size=200)) is None


@pytest.mark.slow  # first gpytorch import alone takes seconds on a shared machine
def test_gp_recovers_a_periodic_rate() -> None:
    rate = periodic_rate(96 + 24, period=24)
    fc = GPForecaster(window=96, fit_iters=40)
    fc.fit(poisson(rate[:96], 5)[None, :])
    out = fc.predict(24)
    assert np.mean(np.abs(out.mean[0] - rate[96:])) < 3.0
    inside = (rate[96:] >= out.quantiles[0.5][0] - 6) & (rate[96:] <= out.quantiles[0.99][0])
    assert inside.mean() > 0.8


def test_gp_follows_a_step_change() -> None:
    hist = np.concatenate([poisson(np.full(60, 5.0), 6), poisson(np.full(12, 30.0), 7)])
    fc = GPForecaster(window=64, fit_iters=30)
    fc.fit(hist[None, :60])
    assert fc.predict(1).mean[0, 0] < 10.0
    fc.update(hist[None, :])  # old hyperparameters: moves most of the way at once
    assert fc.predict(1).mean[0, 0] > 17.0
    fc.fit(hist[None, :])  # a refit (the policy's periodic one) lands on the new level
    assert abs(fc.predict(1).mean[0, 0] - 30.0) < 6.0


def test_gp_bursty_upper_quantile_covers_the_burst_level() -> None:
    rate = onoff_rate(96, seed=3, high=40.0, on=6, off=10)
    rate[-8:] = 40.0  # eight steps into a burst at the forecast origin
    fc = GPForecaster(window=96, fit_iters=30)
    fc.fit(poisson(rate, 8)[None, :])
    out = fc.predict(2)
    assert out.quantiles[0.95][0, 0] >= 35.0
    assert out.quantiles[0.5][0, 0] > 20.0


def test_calendar_features_are_unit_circle() -> None:
    feats = calendar_features(np.array([0.0, 6 * 3600.0, 86_400.0 * 3.5]))
    assert feats.shape == (3, 4)
    np.testing.assert_allclose(feats[:, 0] ** 2 + feats[:, 1] ** 2, 1.0)
    np.testing.assert_allclose(feats[1, :2], [1.0, 0.0], atol=1e-12)  # 6 am: quarter day


@pytest.mark.slow
def test_lstm_recovers_a_daily_cycle_with_mc_dropout_spread() -> None:
    rate = periodic_rate(24 * 20 + 12, period=24)  # hourly steps: the cycle is one day
    hist = poisson(rate[: 24 * 20], 9)
    fc = HybridBayesianForecaster(step_s=3600.0, epochs=8, mc_samples=16, seed=0)
    fc.fit(hist[None, :], end_s=24 * 20 * 3600.0)
    out = fc.predict(12)
    assert out.mean.shape == (1, 12)
    assert np.mean(np.abs(out.mean[0] - rate[24 * 20 :])) < 4.0
    assert np.all(out.std > 0)
    pool = fc.paper_pool(1)
    assert pool[0, 0] >= np.ceil(out.quantiles[0.95][0, 0]) - 1e-9


def test_lstm_needs_enough_history() -> None:
    with pytest.raises(ValueError, match="needs >= 68 steps"):
        HybridBayesianForecaster().fit(np.ones((1, 30)))


def test_gp_numpy_posterior_matches_gpytorch() -> None:
    import gpytorch
    import torch

    hist = poisson(periodic_rate(80, period=12), 12)[None, :]
    fc = GPForecaster(window=64, fit_iters=15)
    fc.fit(hist)
    out = fc.predict(5)
    model = fc._model
    xs = torch.arange(64, 69, dtype=torch.float64).view(1, -1, 1)
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        post = model.likelihood(model(xs))
    z_med = post.mean.numpy()
    expected = np.maximum(np.maximum(z_med, 0) ** 2 / 4 - 0.375, 0)
    np.testing.assert_allclose(out.quantiles[0.5], expected, rtol=1e-5, atol=1e-5)
