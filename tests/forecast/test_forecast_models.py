"""GP and hybrid Bayesian (LSTM) forecasters recover periodic, step and bursty patterns."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.forecast.gp import (
    GPForecaster,
    dominant_period,
    gpytorch_reference,
    marginal_nll_gradient,
)
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


def test_gp_gradient_matches_gpytorch_autograd() -> None:
    """The closed-form gradient of the fit is GPyTorch's marginal likelihood's, by autograd."""
    import gpytorch
    import torch

    rng = np.random.default_rng(3)
    y = 2.0 * np.sqrt(poisson(periodic_rate(40, period=9), 4)[None, :] + 0.375)
    y = np.vstack([y, 2.0 * np.sqrt(rng.poisson(6.0, size=(1, 40)) + 0.375)])
    anchor = y[:, -6:].mean(axis=1)
    values = {
        "rbf_scale": np.array([0.7, 2.0]),
        "rbf_ls": np.array([5.0, 1.5]),
        "per_scale": np.array([1.3, 0.4]),
        "per_ls": np.array([0.8, 2.5]),
        "period": np.array([9.5, 13.0]),
        "noise": np.array([0.6, 1.7]),
    }
    ours = marginal_nll_gradient(values, y - anchor[:, None])
    model, x = gpytorch_reference(values, y, anchor)
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    (-mll(model(x), torch.as_tensor(y)).sum()).backward()
    raw = {
        "rbf_scale": model.rbf.raw_outputscale,
        "rbf_ls": model.rbf.base_kernel.raw_lengthscale,
        "per_scale": model.per.raw_outputscale,
        "per_ls": model.per.base_kernel.raw_lengthscale,
        "period": model.per.base_kernel.raw_period_length,
        "noise": model.likelihood.noise_covar.raw_noise,
    }
    for name, param in raw.items():
        slope = torch.sigmoid(param.detach()).reshape(-1).numpy()  # d softplus / d raw
        np.testing.assert_allclose(
            ours[name] * slope, param.grad.reshape(-1).numpy(), rtol=1e-6, atol=1e-9, err_msg=name
        )


def test_gp_numpy_posterior_matches_gpytorch() -> None:
    import gpytorch
    import torch

    hist = poisson(periodic_rate(80, period=12), 12)[None, :]
    fc = GPForecaster(window=64, fit_iters=15)
    fc.fit(hist)
    out = fc.predict(5)
    y = 2.0 * np.sqrt(hist[:, -64:] + 0.375)
    model, _ = gpytorch_reference(fc._params, y, y[:, -fc.anchor_steps :].mean(axis=1))
    model.eval()
    xs = torch.arange(64, 69, dtype=torch.float64).view(1, -1, 1)
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        post = model.likelihood(model(xs))
    z_med = post.mean.numpy()
    expected = np.maximum(np.maximum(z_med, 0) ** 2 / 4 - 0.375, 0)
    np.testing.assert_allclose(out.quantiles[0.5], expected, rtol=1e-5, atol=1e-5)
