"""The paper's hybrid Bayesian network: LSTM encoder-decoder + prediction net + MC dropout.

Reproduces Aquatope's pre-warm model (DESIGN.md §9), after Zhu & Laptev's Uber forecaster:

* **Features** per step: the z-scored count (per function, mean and spread of its history),
  and sin/cos of the hour of day and of the weekday of the step (from ``end_s`` and ``step_s``).
* **Stage 1, encoder-decoder.** An encoder LSTM (hidden 64, dropout 0.25 on its inputs and on
  its final state) reads ``in_steps = 48`` steps; a decoder LSTM started from the encoder's
  state reads the calendar features of the next ``out_steps = 12`` steps and emits their
  z-counts. Trained on every window of the history (all functions pooled) with MSE.
* **Stage 2, prediction net.** With the encoder frozen, a network ``64 -> 16 -> out_steps``
  (tanh, dropout 0.2) maps the encoder's embedding to the ``out_steps`` z-counts. (The paper's
  ``64 -> 16 -> 1`` is per step; one head per horizon step keeps a single forward pass.)
* **Uncertainty.** Monte-Carlo dropout (``mc_samples`` passes with dropout on) gives the model
  variance; the inherent noise variance is the mean squared error of the MC-mean prediction
  on the held-out last ``val_share`` of windows, per horizon step. Predictive
  ``std = sqrt(model var + noise var)``; quantiles are normal, clipped at zero. The paper keeps
  ``ceil(upper bound)`` containers warm (:meth:`HybridBayesianForecaster.paper_pool`).

Input layout: ``n_functions x n_steps`` counts per step (see :mod:`scheduler.forecast.base`);
needs at least ``in_steps + out_steps + 8`` steps to fit (days of per-minute data in the
paper's setting — the weakness the policy's fallback covers). Horizons beyond ``out_steps``
repeat the last step. torch is imported lazily; dtype float32 and seeds are set explicitly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scheduler.forecast.base import DEFAULT_LEVELS, Forecast, as_history, normal_quantiles

__all__ = ["HybridBayesianForecaster", "calendar_features"]

_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S


def calendar_features(times_s: np.ndarray) -> np.ndarray:
    """sin/cos of hour of day and of weekday for each time (seconds): shape ``n x 4``."""
    t = np.asarray(times_s, dtype=np.float64)
    day = 2 * math.pi * (t % _DAY_S) / _DAY_S
    week = 2 * math.pi * (t % _WEEK_S) / _WEEK_S
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=-1)


class HybridBayesianForecaster:
    """Aquatope's LSTM encoder-decoder + prediction network with MC-dropout uncertainty.

    Args:
        step_s: step length in seconds (60 = the paper's per-minute counts).
        in_steps / out_steps: encoder input length and decoder/prediction horizon.
        hidden: encoder/decoder LSTM width.
        enc_dropout / pred_dropout: dropout of the encoder and the prediction net.
        epochs: training epochs of each stage.
        batch_size: windows per optimiser step.
        lr: Adam learning rate.
        mc_samples: Monte-Carlo dropout passes per prediction.
        val_share: share of the last windows held out to estimate the noise variance.
        max_windows: cap on training windows (most recent kept).
        levels: quantile levels reported.
        seed: torch seed.
    """

    def __init__(
        self,
        *,
        step_s: float = 60.0,
        in_steps: int = 48,
        out_steps: int = 12,
        hidden: int = 64,
        enc_dropout: float = 0.25,
        pred_dropout: float = 0.2,
        epochs: int = 15,
        batch_size: int = 64,
        lr: float = 3e-3,
        mc_samples: int = 32,
        val_share: float = 0.15,
        max_windows: int = 2048,
        levels: tuple[float, ...] = DEFAULT_LEVELS,
        seed: int = 0,
    ) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        self.step_s = float(step_s)
        self.in_steps = int(in_steps)
        self.out_steps = int(out_steps)
        self.hidden = int(hidden)
        self.enc_dropout = float(enc_dropout)
        self.pred_dropout = float(pred_dropout)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.mc_samples = int(mc_samples)
        self.val_share = float(val_share)
        self.max_windows = int(max_windows)
        self.levels = tuple(levels)
        self.seed = int(seed)
        self._net: Any = None
        self._mu: np.ndarray | None = None
        self._sigma: np.ndarray | None = None
        self._noise_var: np.ndarray | None = None
        self._history: np.ndarray | None = None
        self._end_s = 0.0

    @property
    def min_steps(self) -> int:
        """Steps of history needed by :meth:`fit`."""
        return self.in_steps + self.out_steps + 8

    # -- data -------------------------------------------------------------------------------

    def _times(self, n_steps: int, end_s: float) -> np.ndarray:
        """Start time of each of ``n_steps`` steps ending at ``end_s``."""
        return end_s - self.step_s * np.arange(n_steps, 0, -1, dtype=np.float64)

    def _features(self, hist: np.ndarray, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        """z-counts (``n_f x n``) and calendar features (``n x 4``) incl. ``out_steps`` ahead."""
        assert self._mu is not None and self._sigma is not None
        z = (hist - self._mu[:, None]) / self._sigma[:, None]
        times = self._times(hist.shape[1], end_s)
        ahead = end_s + self.step_s * np.arange(self.out_steps, dtype=np.float64)
        cal = calendar_features(np.concatenate([times, ahead]))
        return z, cal

    def _windows(self, hist: np.ndarray, end_s: float) -> tuple[Any, Any, Any]:
        import torch

        z, cal = self._features(hist, end_s)
        n_f, n = z.shape
        xs, fs, ys = [], [], []
        for start in range(0, n - self.in_steps - self.out_steps + 1):
            mid, stop = start + self.in_steps, start + self.in_steps + self.out_steps
            for i in range(n_f):
                xs.append(np.concatenate([z[i, start:mid, None], cal[start:mid]], axis=1))
                fs.append(cal[mid:stop])
                ys.append(z[i, mid:stop])
        keep = slice(-self.max_windows, None)

        def as_t(rows: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.asarray(rows[keep]), dtype=torch.float32)

        return as_t(xs), as_t(fs), as_t(ys)

    # -- network ------------------------------------------------------------------------------

    def _build(self) -> Any:
        import torch
        from torch import nn

        hidden, out_steps = self.hidden, self.out_steps
        enc_p, pred_p = self.enc_dropout, self.pred_dropout

        class _Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.enc_in_drop = nn.Dropout(enc_p)
                self.encoder = nn.LSTM(5, hidden, batch_first=True)
                self.enc_out_drop = nn.Dropout(enc_p)
                self.decoder = nn.LSTM(4, hidden, batch_first=True)
                self.dec_head = nn.Linear(hidden, 1)
                self.pred = nn.Sequential(
                    nn.Linear(hidden, 16),
                    nn.Tanh(),
                    nn.Dropout(pred_p),
                    nn.Linear(16, out_steps),
                )

            def encode(self, x: Any) -> tuple[Any, Any]:
                _, (h, c) = self.encoder(self.enc_in_drop(x))
                return self.enc_out_drop(h), c

            def decode(self, x: Any, fut: Any) -> Any:
                h, c = self.encode(x)
                out, _ = self.decoder(fut, (h, c))
                return self.dec_head(out).squeeze(-1)

            def predict(self, x: Any) -> Any:
                h, _ = self.encode(x)
                return self.pred(h[-1])

        torch.manual_seed(self.seed)
        return _Net().float()

    def _train(self, params: Any, loss_fn: Any, n: int) -> None:
        import torch

        opt = torch.optim.Adam(params, lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            for b in range(0, n, self.batch_size):
                idx = order[b : b + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(idx)
                loss.backward()
                opt.step()

    def fit(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Train both stages and the noise variance on ``history``.

        Args:
            history: ``n_functions x n_steps`` counts per step, ``n_steps >= min_steps``.
            end_s: time at the end of the last step (seconds since the Unix epoch, or any
                origin); default ``n_steps * step_s``.

        Raises:
            ValueError: history shorter than :attr:`min_steps`.
        """
        import torch

        hist = as_history(history)
        if hist.shape[1] < self.min_steps:
            raise ValueError(f"the LSTM needs >= {self.min_steps} steps, got {hist.shape[1]}")
        end = float(end_s) if end_s is not None else hist.shape[1] * self.step_s
        self._mu = hist.mean(axis=1)
        self._sigma = np.maximum(hist.std(axis=1), 1.0)
        x, fut, y = self._windows(hist, end)
        n = x.shape[0]
        n_val = max(1, round(n * self.val_share))
        n_train = max(1, n - n_val)
        net = self._build()
        net.train()
        mse = torch.nn.functional.mse_loss

        self._train(
            list(net.encoder.parameters())
            + list(net.decoder.parameters())
            + list(net.dec_head.parameters()),
            lambda idx: mse(net.decode(x[idx], fut[idx]), y[idx]),
            n_train,
        )
        for p in net.encoder.parameters():
            p.requires_grad_(False)
        self._train(
            list(net.pred.parameters()),
            lambda idx: mse(net.predict(x[idx]), y[idx]),
            n_train,
        )
        self._net = net
        val = slice(n - n_val, n)
        mean, _ = self._mc(x[val])
        resid = (y[val].numpy() - mean) ** 2
        self._noise_var = resid.mean(axis=0)
        self._history = hist
        self._end_s = end

    def update(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        """Keep the trained network; read the newest ``in_steps`` steps for the next forecast."""
        hist = as_history(history)
        if self._net is None or hist.shape[0] != self._mu.shape[0]:  # type: ignore[union-attr]
            self.fit(hist, end_s=end_s)
            return
        self._history = hist
        self._end_s = float(end_s) if end_s is not None else hist.shape[1] * self.step_s

    def _mc(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """MC-dropout mean and variance of z-predictions: ``batch x out_steps`` each."""
        import torch

        net = self._net
        net.train()  # dropout on: Monte-Carlo sampling
        with torch.no_grad():
            torch.manual_seed(self.seed + 1)
            rep = x.repeat(self.mc_samples, 1, 1)
            draws = net.predict(rep).view(self.mc_samples, x.shape[0], self.out_steps)
        return draws.mean(0).numpy(), draws.var(0).numpy()

    def predict(self, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps (repeating the last one past ``out_steps``).

        Returns:
            :class:`Forecast` in counts: ``n_functions x horizon`` mean, std and quantiles.
        """
        import torch

        if self._net is None or self._history is None:
            raise RuntimeError("call fit() before predict()")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        assert self._mu is not None and self._sigma is not None and self._noise_var is not None
        hist = self._history[:, -self.in_steps :]
        if hist.shape[1] < self.in_steps:
            pad = np.repeat(hist[:, :1], self.in_steps - hist.shape[1], axis=1)
            hist = np.concatenate([pad, hist], axis=1)
        z, cal = self._features(hist, self._end_s)
        x = np.concatenate(
            [z[:, :, None], np.repeat(cal[None, : self.in_steps], z.shape[0], axis=0)], axis=2
        )
        mean_z, var_z = self._mc(torch.as_tensor(x, dtype=torch.float32))
        std_z = np.sqrt(var_z + self._noise_var[None, :])
        idx = np.minimum(np.arange(horizon), self.out_steps - 1)
        mean = np.maximum(mean_z[:, idx] * self._sigma[:, None] + self._mu[:, None], 0.0)
        std = std_z[:, idx] * self._sigma[:, None]
        return Forecast(mean=mean, std=std, quantiles=normal_quantiles(mean, std, self.levels))

    def paper_pool(self, horizon: int = 1, *, level: float = 0.95) -> np.ndarray:
        """The paper's warm pool: ``ceil`` of the upper ``level`` bound, per function and step."""
        return np.asarray(np.ceil(self.predict(horizon).quantile(level)), np.float64)
