"""Gaussian-process forecaster of arrival rates (GPyTorch), cheap enough to refit online.

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
  initialisation: warm starts stalled after level changes); **update** only swaps in the
  newest window and re-conditions with the learned hyperparameters (one Cholesky of
  ``window x window``), which is what the policy does every step, refitting only every few.
* **Predictions** are computed in numpy from the learned hyperparameters (the same kernel
  formulas as GPyTorch's; a test checks they agree), which keeps a prediction well under a
  millisecond. They are Gaussian in ``z``; quantiles map back exactly through the monotone inverse
  transform, the mean and spread approximately.

Input layout: ``n_functions x n_steps`` counts per step (see :mod:`scheduler.forecast.base`);
horizon in steps of ``step_s`` seconds; ``quantiles[q]`` is the model's ``q``-quantile of the
count in each step. torch and gpytorch are imported lazily, on first use.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from scheduler._threads import single_thread
from scheduler.forecast.base import DEFAULT_LEVELS, Forecast, as_history

__all__ = ["GPForecaster", "dominant_period"]

_NORMAL = NormalDist()


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
        self._model: Any = None
        self._params: dict[str, np.ndarray] = {}
        self._weights: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
        self._z = np.zeros((0, 0))
        self._n_steps = 0
        self._n_functions = 0

    # -- model plumbing ----------------------------------------------------------------------

    def _data(self, history: np.ndarray) -> tuple[Any, Any]:
        import torch

        tail = history[:, -self.window :]
        z = 2.0 * np.sqrt(tail + 0.375)
        x = torch.arange(tail.shape[1], dtype=torch.float64).unsqueeze(-1)
        x = x.expand(tail.shape[0], -1, -1).contiguous()
        return x, torch.as_tensor(z, dtype=torch.float64)

    def _build(self, x: Any, y: Any, history: np.ndarray) -> Any:
        import gpytorch
        import torch

        batch = torch.Size([y.shape[0]])

        class _Model(gpytorch.models.ExactGP):  # type: ignore[misc]  # untyped library
            def __init__(self, train_x: Any, train_y: Any, lik: Any) -> None:
                super().__init__(train_x, train_y, lik)
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

        lik = gpytorch.likelihoods.GaussianLikelihood(
            batch_shape=batch, noise_constraint=gpytorch.constraints.GreaterThan(0.05)
        ).double()
        model = _Model(x, y, lik).double()
        n = x.shape[1]
        periods = []
        for row in history[:, -self.window :]:
            p = dominant_period(row)
            periods.append(float(p) if p is not None else float(max(n, 8)))
        model.mean_module.constant.requires_grad_(False)
        with torch.no_grad():
            model.rbf.base_kernel.lengthscale = torch.full((batch[0], 1, 1), max(n / 8.0, 2.0))
            model.per.base_kernel.period_length = torch.tensor(periods).view(-1, 1, 1)
            model.per.base_kernel.lengthscale = torch.full((batch[0], 1, 1), 1.0)
            var = y.var(dim=-1).clamp_min(0.1)
            model.rbf.outputscale = 0.5 * var
            model.per.outputscale = 0.5 * var
            lik.noise = torch.full_like(lik.noise, 1.0)
        return model

    def _anchor(self, y: Any) -> None:
        import torch

        with torch.no_grad():
            self._model.mean_module.constant.copy_(y[:, -self.anchor_steps :].mean(dim=-1))

    def _train(self, iters: int) -> None:
        import gpytorch
        import torch

        model = self._model
        model.train()
        model.likelihood.train()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        x, y = model.train_inputs[0], model.train_targets
        for _ in range(iters):
            opt.zero_grad()
            loss = -mll(model(x), y).sum()
            loss.backward()
            opt.step()
        model.eval()
        model.likelihood.eval()

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
            x, y = self._data(hist)
            # a fresh build each fit: warm starts from a stale optimum stall after a level change
            self._model = self._build(x, y, hist)
            self._anchor(y)
            self._n_functions = hist.shape[0]
            self._n_steps = x.shape[1]
            self._train(self.fit_iters)
            self._params = self._export()
            self._weights = {}
        self._z = y.numpy().copy()

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

    def _export(self) -> dict[str, np.ndarray]:
        """Learned hyperparameters as numpy arrays of shape ``(n_functions,)``."""
        m = self._model

        def flat(t: Any) -> np.ndarray:
            return np.asarray(t.detach().reshape(-1).numpy(), np.float64).copy()

        return {
            "rbf_scale": flat(m.rbf.outputscale),
            "rbf_ls": flat(m.rbf.base_kernel.lengthscale),
            "per_scale": flat(m.per.outputscale),
            "per_ls": flat(m.per.base_kernel.lengthscale),
            "period": flat(m.per.base_kernel.period_length),
            "noise": flat(m.likelihood.noise),
        }

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
        if self._model is None or hist.shape[0] != self._n_functions or hist.shape[1] < 4:
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

        if self._model is None:
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
