"""Gaussian-process forecaster of arrival rates (GPyTorch's model), cheap enough to refit online.

Model, per function (a batch of independent GPs, one per row of the history):

* **Inputs** are step indices of the last ``window`` steps; **targets** are the
  Anscombe-transformed counts ``z = 2 * sqrt(count + 3/8)``, which makes Poisson noise roughly
  unit-variance and Gaussian, so one Gaussian likelihood fits quiet and busy functions alike.
* **Kernel**: ``Scale(RBF)`` (smooth level changes) ``+ Scale(Periodic)`` (cycles) plus the
  Gaussian noise of the likelihood. The period starts at the strongest autocorrelation peak of
  the history (or at the window length when there is none) and is learned with the rest.
* **Mean**: a constant held at the recent level (mean of the last ``anchor_steps``
  transformed steps), so a forecast reverts to where the data are now after a step change.
* **Fit** maximises the exact marginal likelihood with Adam (``fit_iters`` steps from a fresh
  initialisation: warm starts stalled after level changes), with GPyTorch's parameterisation
  and loss but the gradient in closed form (:func:`marginal_nll_gradient`); **update** only
  swaps in the newest window and re-conditions with the learned hyperparameters (one Cholesky of
  ``window x window``), which is what the policy does every step, refitting only every few.
* **Predictions** are computed in numpy from the learned hyperparameters (the same kernel
  formulas as GPyTorch's; a test checks they agree), which keeps a prediction well under a
  millisecond. They are Gaussian in ``z``; quantiles map back exactly through the monotone inverse
  transform, the mean and spread approximately.

Input layout: ``n_functions x n_steps`` counts per step (see :mod:`scheduler.forecast.base`);
horizon in steps of ``step_s`` seconds; ``quantiles[q]`` is the model's ``q``-quantile of the
count in each step. torch (for its Adam) is imported lazily, on first fit.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from scheduler._threads import single_thread
from scheduler.forecast.base import DEFAULT_LEVELS, Forecast, as_history

__all__ = ["GPForecaster", "dominant_period", "gpytorch_reference", "marginal_nll_gradient"]

_NORMAL = NormalDist()
_NOISE_FLOOR = 0.05  # the likelihood's least noise variance (transformed counts)


def dominant_period(series: np.ndarray, *, min_lag: int = 3, threshold: float = 0.3) -> int | None:
    """Lag of the highest autocorrelation peak of ``series`` above ``threshold``, if any.

    Args:
        series: 1-D counts.
        min_lag: smallest period considered (steps).
        threshold: minimum autocorrelation for a peak to count.

    Returns:
        The period in steps, or None.
    """
    x = np.asarray(series, dtype=np.float64)
    n = x.shape[0]
    if n < 3 * min_lag:
        return None
    x = x - x.mean()
    denom = float(np.dot(x, x))
    if denom <= 0:
        return None
    spec = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[: n // 2] / denom
    best, best_lag = threshold, None
    for lag in range(min_lag, n // 2 - 1):
        if acf[lag] > best and acf[lag] >= acf[lag - 1] and acf[lag] >= acf[lag + 1]:
            best, best_lag = float(acf[lag]), lag
    return best_lag


def marginal_nll_gradient(
    values: dict[str, np.ndarray], resid: np.ndarray
) -> dict[str, np.ndarray]:
    """Gradient of the negative log marginal likelihood per point, summed over rows, in each
    hyperparameter (``rbf_scale``, ``rbf_ls``, ``per_scale``, ``per_ls``, ``period``,
    ``noise``: arrays with one value per row) for zero-mean targets ``resid`` (rows x steps)
    on the steps ``0..n-1``.

    On evenly spaced steps the covariance depends on the lag only (Toeplitz), so with
    ``W = (K^-1 - a a') / 2``, ``a = K^-1 resid``, the derivative in a hyperparameter is the
    sum over lags of the kernel's derivative times the sum of ``W`` along that lag's
    diagonals: one inverse, then sums over ``n`` lags.
    """
    b, n = resid.shape
    lags = np.arange(n, dtype=np.float64)
    lag_of, bins = _lag_index(b, n)
    e_rbf = np.exp(-0.5 * (lags / values["rbf_ls"][:, None]) ** 2)
    angle = (np.pi / values["period"][:, None]) * lags
    sin2 = np.sin(angle) ** 2
    e_per = np.exp(-2.0 * sin2 / values["per_ls"][:, None])
    by_lag = values["rbf_scale"][:, None] * e_rbf + values["per_scale"][:, None] * e_per
    cov = by_lag[:, lag_of].reshape(b, n, n)
    cov[:, np.arange(n), np.arange(n)] += values["noise"][:, None]
    inv = np.linalg.inv(cov)
    alpha = np.einsum("bij,bj->bi", inv, resid)
    w = 0.5 * (inv - alpha[:, :, None] * alpha[:, None, :])
    sums = np.bincount(bins, weights=w.ravel(), minlength=b * n).reshape(b, n) / n
    d_per = values["per_scale"][:, None] * e_per * sums
    return {
        "rbf_scale": (e_rbf * sums).sum(-1),
        "rbf_ls": (values["rbf_scale"][:, None] * e_rbf * sums * lags**2).sum(-1)
        / values["rbf_ls"] ** 3,
        "per_scale": (e_per * sums).sum(-1),
        "per_ls": 2.0 * (d_per * sin2).sum(-1) / values["per_ls"] ** 2,
        "period": 2.0
        * np.pi
        * (d_per * lags * np.sin(2.0 * angle)).sum(-1)
        / (values["per_ls"] * values["period"] ** 2),
        "noise": sums[:, 0],
    }


@functools.lru_cache(maxsize=8)
def _lag_index(rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``|i - j|`` for every entry of an ``n x n`` matrix (flat), and the same offset by
    ``n`` per row of a batch (bins for one ``bincount``)."""
    lag_of = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).ravel()
    return lag_of, (lag_of[None, :] + n * np.arange(rows)[:, None]).ravel()


def gpytorch_reference(
    values: dict[str, np.ndarray], targets: np.ndarray, mean: np.ndarray
) -> tuple[Any, Any]:
    """GPyTorch's ``ExactGP`` of this forecaster (one batch row per function) with the given
    hyperparameters and constant ``mean``: the reference the closed-form fit and the numpy
    posterior are checked against (tests, ``bench/gp_fit.py``).

    Returns:
        ``(model, inputs)``: the model in train mode and its training inputs.
    """
    import gpytorch
    import torch

    batch = torch.Size([targets.shape[0]])
    x = torch.arange(targets.shape[1], dtype=torch.float64).view(1, -1, 1)
    x = x.expand(batch[0], -1, -1).contiguous()

    class _Model(gpytorch.models.ExactGP):  # type: ignore[misc]  # untyped library
        def __init__(self) -> None:
            lik = gpytorch.likelihoods.GaussianLikelihood(
                batch_shape=batch, noise_constraint=gpytorch.constraints.GreaterThan(_NOISE_FLOOR)
            )
            super().__init__(x, torch.as_tensor(targets, dtype=torch.float64), lik)
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
            self.rbf = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(batch_shape=batch), batch_shape=batch
            )
            self.per = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.PeriodicKernel(batch_shape=batch), batch_shape=batch
            )

        def forward(self, inp: Any) -> Any:
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(inp), self.rbf(inp) + self.per(inp)
            )

    model = _Model().double()
    model.mean_module.constant.requires_grad_(False)
    with torch.no_grad():
        model.mean_module.constant.copy_(torch.as_tensor(mean))
        model.rbf.outputscale = torch.as_tensor(values["rbf_scale"])
        model.rbf.base_kernel.lengthscale = torch.as_tensor(values["rbf_ls"]).view(-1, 1, 1)
        model.per.outputscale = torch.as_tensor(values["per_scale"])
        model.per.base_kernel.lengthscale = torch.as_tensor(values["per_ls"]).view(-1, 1, 1)
        model.per.base_kernel.period_length = torch.as_tensor(values["period"]).view(-1, 1, 1)
        model.likelihood.noise = torch.as_tensor(values["noise"]).view(-1, 1)
    return model, x


def _inv_softplus(v: np.ndarray) -> np.ndarray:
    """The free value whose softplus is ``v`` (> 0)."""
    return np.asarray(v + np.log(-np.expm1(-v)), np.float64)


class GPForecaster:
    """Batched exact GP (RBF + periodic + noise) over Anscombe-transformed counts.

    Args:
        step_s: step length in seconds (metadata; the model works in steps).
        window: most recent steps the GP conditions on (cost grows as ``window**3``).
        fit_iters: Adam iterations per fit.
        lr: Adam learning rate.
        levels: quantile levels reported in every :class:`Forecast`.
        seed: torch seed for reproducible fits.
        anchor_steps: the GP's constant mean is held at the mean of the last this many
            (transformed) steps, so forecasts revert to the recent level, not the window's.
    """

    def __init__(
        self,
        *,
        step_s: float = 60.0,
        window: int = 96,
        fit_iters: int = 40,
        lr: float = 0.1,
        levels: tuple[float, ...] = DEFAULT_LEVELS,
        seed: int = 0,
        anchor_steps: int = 6,
    ) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        if window < 4:
            raise ValueError(f"window must be >= 4, got {window}")
        self.step_s = float(step_s)
        self.window = int(window)
        self.fit_iters = int(fit_iters)
        self.lr = float(lr)
        self.levels = tuple(levels)
        self.seed = int(seed)
        self.anchor_steps = max(1, int(anchor_steps))
        self._fitted = False
        self._params: dict[str, np.ndarray] = {}
        self._weights: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
        self._z = np.zeros((0, 0))
        self._n_steps = 0
        self._n_functions = 0

    # -- model plumbing ----------------------------------------------------------------------

    def _targets(self, history: np.ndarray) -> np.ndarray:
        """The last ``window`` steps, Anscombe-transformed."""
        return np.asarray(2.0 * np.sqrt(history[:, -self.window :] + 0.375), np.float64)

    def _initial(self, y: np.ndarray, history: np.ndarray) -> dict[str, np.ndarray]:
        """Starting hyperparameters: lengthscales from the window, the period at the strongest
        autocorrelation peak (the window length without one), half the variance each."""
        n = y.shape[-1]
        periods = []
        for row in history[:, -self.window :]:
            p = dominant_period(row)
            periods.append(float(p) if p is not None else float(max(n, 8)))
        var = np.maximum(y.var(axis=-1, ddof=1), 0.1)
        ones = np.ones(y.shape[0])
        return {
            "rbf_scale": 0.5 * var,
            "rbf_ls": ones * max(n / 8.0, 2.0),
            "per_scale": 0.5 * var,
            "per_ls": ones.copy(),
            "period": np.asarray(periods, dtype=np.float64),
            "noise": ones.copy(),
        }

    def _train(
        self, y: np.ndarray, initial: dict[str, np.ndarray], iters: int
    ) -> dict[str, np.ndarray]:
        """Maximise the exact marginal likelihood of every row with Adam; learned values.

        GPyTorch's parameterisation of ``ScaleKernel(RBFKernel) + ScaleKernel(PeriodicKernel)``
        with a ``GaussianLikelihood(GreaterThan(0.05))`` (each positive value the softplus of
        a free one) and its loss (``ExactMarginalLogLikelihood``, summed over rows), with the
        gradient in closed form (:func:`marginal_nll_gradient`; a test checks it against
        GPyTorch's autograd, which cost about five times as much per fit at this size).
        """
        import torch

        resid = y - y[:, -self.anchor_steps :].mean(axis=-1, keepdims=True)
        free = {
            k: torch.from_numpy(_inv_softplus(v - (_NOISE_FLOOR if k == "noise" else 0.0)))
            for k, v in initial.items()
        }
        opt = torch.optim.Adam(list(free.values()), lr=self.lr)
        for _ in range(iters):
            values = {k: np.logaddexp(0.0, t.numpy()) for k, t in free.items()}  # softplus
            values["noise"] = values["noise"] + _NOISE_FLOOR
            grads = marginal_nll_gradient(values, resid)
            for k, t in free.items():  # through the softplus: times its slope
                t.grad = torch.from_numpy(grads[k] / (1.0 + np.exp(-t.numpy())))
            opt.step()
        out = {k: np.logaddexp(0.0, t.numpy()) for k, t in free.items()}
        out["noise"] = out["noise"] + _NOISE_FLOOR
        if not all(np.all(np.isfinite(x)) for x in out.values()):
            raise RuntimeError("GP fit diverged (non-finite hyperparameters)")
        return out

    # -- Forecaster protocol -------------------------------------------------------------------

    def fit(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Learn hyperparameters on the last ``window`` steps of ``history``.

        Args:
            history: ``n_functions x n_steps`` counts per step (at least 4 steps).
            end_s: ignored (no calendar features).
        """
        del end_s
        import torch

        hist = as_history(history)
        if hist.shape[1] < 4:
            raise ValueError("the GP needs at least 4 steps of history")
        with single_thread():
            torch.manual_seed(self.seed)
            y = self._targets(hist)
            # a fresh start each fit: warm starts from a stale optimum stall after a level change
            self._params = self._train(y, self._initial(y, hist), self.fit_iters)
            self._fitted = True
            self._n_functions = hist.shape[0]
            self._n_steps = y.shape[1]
            self._weights = {}
        self._z = y.copy()

    def fit_rows(self, rows: Sequence[np.ndarray]) -> list[GPForecaster]:
        """Fit one GP per row, batched: rows of equal (windowed) length share one fit.

        A batch of ``B`` independent GPs costs about one fit (the Adam loop's overhead, not
        the ``window x window`` algebra, dominates), so functions due together are fitted
        together.

        Args:
            rows: 1-D count histories (each at least 4 steps).

        Returns:
            One fitted single-function forecaster per row (this forecaster's options).
        """
        out: list[GPForecaster | None] = [None] * len(rows)
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(min(len(row), self.window), []).append(i)
        for length, idx in groups.items():
            hist = np.stack([np.asarray(rows[i], dtype=np.float64)[-length:] for i in idx])
            batch = copy.copy(self)
            batch.fit(hist)
            for j, i in enumerate(idx):
                one = copy.copy(batch)
                one._params = {k: v[j : j + 1].copy() for k, v in batch._params.items()}
                one._z = batch._z[j : j + 1].copy()
                one._n_functions = 1
                one._weights = {}
                out[i] = one
        return [f for f in out if f is not None]

    def _kernel(self, i: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Covariance of function ``i`` between step indices ``a`` and ``b`` (GPyTorch's forms)."""
        p = self._params
        d = a[:, None] - b[None, :]
        rbf = p["rbf_scale"][i] * np.exp(-0.5 * (d / p["rbf_ls"][i]) ** 2)
        per = p["per_scale"][i] * np.exp(
            -2.0 * np.sin(np.pi * d / p["period"][i]) ** 2 / p["per_ls"][i]
        )
        return np.asarray(rbf + per, np.float64)

    def update(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Condition on the newest ``window`` steps with the learned hyperparameters."""
        hist = as_history(history)
        if not self._fitted or hist.shape[0] != self._n_functions or hist.shape[1] < 4:
            self.fit(hist, end_s=end_s)
            return
        tail = hist[:, -self.window :]
        self._z = 2.0 * np.sqrt(tail + 0.375)
        self._n_steps = tail.shape[1]

    def predict(self, horizon: int) -> Forecast:
        """Forecast the ``horizon`` steps after the conditioned history.

        Returns:
            :class:`Forecast` with ``n_functions x horizon`` mean, std and quantiles of counts.
        """
        from scipy.linalg import cho_factor, cho_solve

        if not self._fitted:
            raise RuntimeError("call fit() before predict()")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        # exact GP posterior with the learned hyperparameters, in numpy: a Cholesky of
        # window x window per function (GPyTorch's per-call overhead dominated otherwise)
        # the inputs are step indices 0..n-1 whatever the data, so with fixed hyperparameters
        # the posterior weights depend only on (n, horizon): computed once per fit and reused
        # by every re-conditioning (a forecast is then two small products)
        n = self._n_steps
        mu = np.empty((self._n_functions, horizon))
        sd = np.empty((self._n_functions, horizon))
        key = (n, horizon)
        if key not in self._weights:
            x = np.arange(n, dtype=np.float64)
            xs = np.arange(n, n + horizon, dtype=np.float64)
            per_fn = []
            for i in range(self._n_functions):
                noise = float(self._params["noise"][i])
                k = self._kernel(i, x, x) + noise * np.eye(n)
                factor = cho_factor(k, lower=True, check_finite=False)
                ks = self._kernel(i, xs, x)
                w = cho_solve(factor, ks.T, check_finite=False).T  # horizon x n
                prior = self._params["rbf_scale"][i] + self._params["per_scale"][i]
                var = prior - np.einsum("hn,hn->h", ks, w) + noise
                per_fn.append((w, np.sqrt(np.maximum(var, 1e-9))))
            self._weights = {key: per_fn}  # one shape at a time: the window is full soon
        for i, (w, s) in enumerate(self._weights[key]):
            z = self._z[i]
            anchor = float(z[-self.anchor_steps :].mean())
            mu[i] = anchor + w @ (z - anchor)
            sd[i] = s

        def back(z: np.ndarray) -> np.ndarray:
            zc = np.maximum(z, 0.0)
            return np.asarray(np.maximum(zc * zc / 4.0 - 0.375, 0.0), np.float64)

        quantiles = {q: back(mu + _NORMAL.inv_cdf(q) * sd) for q in self.levels}
        mean = np.maximum(back(mu) + sd * sd / 4.0, 0.0)
        std = np.maximum((back(mu + sd) - back(mu - sd)) / 2.0, 1e-6)
        return Forecast(mean=mean, std=std, quantiles=quantiles)
