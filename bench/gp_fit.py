"""GP forecaster fit time: the closed-form gradient against GPyTorch's autograd, side by side.

For each batch size (functions fitted together, as the pre-warmer batches the fits due in one
tick) the same synthetic histories (96 steps of Poisson counts with a cycle and a burst) are
fitted two ways, with the same initial values, Adam settings and iterations:

* ``closed form``: :class:`scheduler.forecast.gp.GPForecaster` as shipped (gradient from
  :func:`~scheduler.forecast.gp.marginal_nll_gradient`);
* ``gpytorch``: the same model built by :func:`~scheduler.forecast.gp.gpytorch_reference`,
  its ``ExactMarginalLogLikelihood`` differentiated by autograd (how fits were done before).

Prints CPU milliseconds per fit (median of ``--repeats``), their ratio, and the largest
relative difference between the two fits' learned hyperparameters.

Usage: ``.venv/bin/python bench/gp_fit.py [--batches 1,6] [--steps 96] [--repeats 5]``.
Prints one line per batch size, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from _common import emit, machine

from scheduler._threads import single_thread
from scheduler.forecast.gp import GPForecaster, gpytorch_reference


def histories(batch: int, steps: int, seed: int) -> np.ndarray:
    """Poisson counts around a cycle of 12 steps, with a threefold burst in the middle."""
    rng = np.random.default_rng(seed)
    rate = 6.0 + 3.0 * np.sin(2 * np.pi * np.arange(steps) / 12.0)
    rate[steps // 2 : steps // 2 + 8] *= 3.0
    return rng.poisson(rate, size=(batch, steps)).astype(np.float64)


def gpytorch_fit(fc: GPForecaster, hist: np.ndarray) -> dict[str, np.ndarray]:
    """Fit as before the closed form: Adam on GPyTorch's marginal likelihood by autograd."""
    import gpytorch
    import torch

    y = fc._targets(hist)
    model, x = gpytorch_reference(fc._initial(y, hist), y, y[:, -fc.anchor_steps :].mean(axis=1))
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    opt = torch.optim.Adam(model.parameters(), lr=fc.lr)
    targets = model.train_targets
    for _ in range(fc.fit_iters):
        opt.zero_grad()
        (-mll(model(x), targets).sum()).backward()
        opt.step()

    def flat(t: Any) -> np.ndarray:
        return np.asarray(t.detach().reshape(-1).numpy(), np.float64)

    return {
        "rbf_scale": flat(model.rbf.outputscale),
        "rbf_ls": flat(model.rbf.base_kernel.lengthscale),
        "per_scale": flat(model.per.outputscale),
        "per_ls": flat(model.per.base_kernel.lengthscale),
        "period": flat(model.per.base_kernel.period_length),
        "noise": flat(model.likelihood.noise),
    }


def cpu_ms(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median CPU milliseconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append((time.process_time() - start) * 1000.0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,6", help="functions fitted together, comma list")
    parser.add_argument("--steps", type=int, default=96, help="history length (the window)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with single_thread():
        for batch in (int(b) for b in args.batches.split(",") if b):
            hist = histories(batch, args.steps, seed=batch)
            fc = GPForecaster(step_s=10.0, window=args.steps, seed=0)

            def ours(fc: GPForecaster = fc, hist: np.ndarray = hist) -> dict[str, np.ndarray]:
                fc.fit(hist)
                return dict(fc._params)

            def theirs(fc: GPForecaster = fc, hist: np.ndarray = hist) -> dict[str, np.ndarray]:
                return gpytorch_fit(fc, hist)

            ours_ms, a = cpu_ms(ours, args.repeats)
            theirs_ms, b = cpu_ms(theirs, args.repeats)
            diff = max(float(np.max(np.abs(a[k] - b[k]) / np.abs(b[k]))) for k in a)
            row = {
                "functions": batch,
                "steps": args.steps,
                "closed_form_ms": round(ours_ms, 1),
                "gpytorch_ms": round(theirs_ms, 1),
                "speedup": round(theirs_ms / ours_ms, 2),
                "max_rel_param_diff": float(f"{diff:.2e}"),
            }
            print(
                f"{batch} function(s) x {args.steps} steps: closed form {ours_ms:.1f} ms, "
                f"gpytorch {theirs_ms:.1f} ms ({theirs_ms / ours_ms:.2f}x), learned values "
                f"within {diff:.1e} of each other"
            )
            rows.append(row)
    emit({"bench": "gp_fit", "fit_iters": 40, "rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
