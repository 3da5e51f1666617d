"""Gaussian-process surrogates for cost and log tail latency (Matérn 5/2, float64).

Inputs are points of the unit box from :class:`~scheduler.configure.transform.UnitTransform`
(``n x d``, ``d = 2 × n_functions``). For workflows of three or more functions the kernel is
*additive over functions*: a sum of one Matérn 5/2 kernel (ARD over the function's CPU and
memory) per function, each with its own output scale. Cost is a sum of per-function costs, and
log tail latency of a chain is dominated by per-stage terms, so this structure fits the
problem and keeps the model learnable from ~20 points in 12–20 dimensions, where a plain
``2N``-dimensional kernel is not. Small workflows get one ARD kernel over all dimensions.

torch, gpytorch and botorch are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from botorch.models.gp_regression import SingleTaskGP
    from botorch.models.model_list_gp_regression import ModelListGP

__all__ = [
    "ADDITIVE_MIN_FUNCTIONS",
    "LINEAR_MEAN_MIN_SAMPLES",
    "build_gp",
    "fit_outcome_models",
    "fit_stage_models",
    "hyperparameters",
    "quiet_numerics",
]

ADDITIVE_MIN_FUNCTIONS = 3
LINEAR_MEAN_MIN_SAMPLES = 6


def _covariance(n_dims: int, groups: Sequence[Sequence[int]] | None) -> Any:
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.kernels import AdditiveKernel, ScaleKernel

    if not groups:
        return ScaleKernel(
            get_covar_module_with_dim_scaled_prior(ard_num_dims=n_dims, use_rbf_kernel=False)
        )
    parts = [
        ScaleKernel(
            get_covar_module_with_dim_scaled_prior(
                ard_num_dims=len(g), use_rbf_kernel=False, active_dims=list(g)
            )
        )
        for g in groups
    ]
    return AdditiveKernel(*parts)


_POOLED_MEAN: Any = None


@contextlib.contextmanager
def quiet_numerics() -> Iterator[None]:
    """Silence gpytorch/linear_operator ``NumericalWarning`` (negative variances rounded up,
    jitter added): expected on the near-duplicate lattice points a search revisits, and
    handled by those libraries."""
    from gpytorch.utils.warnings import NumericalWarning as GpNumerical
    from linear_operator.utils.warnings import NumericalWarning as LoNumerical

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GpNumerical)
        warnings.simplefilter("ignore", LoNumerical)
        yield


def _pooled_linear_mean(n_dims: int, dims: Sequence[int] | None = None) -> Any:
    """Mean ``c + w_cpu · avg(cpu coordinates) + w_mem · avg(memory coordinates)``.

    Three parameters whatever the dimension, so a handful of profiling runs pins them; it
    carries the trend "fewer resources → slower" into regions the data has not reached.
    """
    global _POOLED_MEAN
    if _POOLED_MEAN is None:
        import torch
        from gpytorch.means import Mean

        class PooledLinearMean(Mean):  # type: ignore[misc]
            def __init__(self, n_dims: int, dims: Sequence[int] | None) -> None:
                super().__init__()
                self.n_dims = n_dims
                self.dims = list(dims) if dims is not None else list(range(n_dims))
                self.register_parameter("weights", torch.nn.Parameter(torch.zeros(2)))
                self.register_parameter("bias", torch.nn.Parameter(torch.zeros(1)))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                cpu = x[..., [d for d in self.dims if d % 2 == 0]].mean(-1)
                mem = x[..., [d for d in self.dims if d % 2 == 1]].mean(-1)
                out: torch.Tensor = self.bias + self.weights[0] * cpu + self.weights[1] * mem
                return out

        _POOLED_MEAN = PooledLinearMean
    return _POOLED_MEAN(n_dims, dims)


def build_gp(
    train_x: np.ndarray,
    train_y: np.ndarray,
    *,
    groups: Sequence[Sequence[int]] | None = None,
    linear_mean: bool = False,
    mean_dims: Sequence[int] | None = None,
) -> SingleTaskGP:
    """An unfitted GP on ``train_x`` (``n x d`` unit box) → ``train_y`` (``n``), float64.

    Args:
        train_x: inputs in [0, 1], shape ``n x d``.
        train_y: outcomes, shape ``n``; standardised inside the model.
        groups: dimension indices per additive component; None = one ARD kernel.
        linear_mean: a pooled linear prior mean (see :func:`_pooled_linear_mean`) instead of a
            constant one, so the model extrapolates
            the trend (latency rising as resources shrink) into unexplored corners instead of
            reverting to the average of what it has seen; this keeps the probability of
            feasibility honest far from the data.
        mean_dims: the dimensions the linear mean reads (default all).
    """
    import torch
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.means import ConstantMean

    x = torch.as_tensor(np.asarray(train_x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.float64).reshape(-1, 1)
    return SingleTaskGP(
        x,
        y,
        covar_module=_covariance(x.shape[-1], groups),
        mean_module=(
            _pooled_linear_mean(x.shape[-1], mean_dims) if linear_mean else ConstantMean()
        ),
        outcome_transform=Standardize(m=1),
    )


FIT_MAX_ITERATIONS = 120


def hyperparameters(model: Any) -> dict[str, Any]:
    """The fitted hyperparameters of a GP (kernel, noise, mean), for warm-starting a refit."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if "raw_" in k or k.startswith("mean_module.")
    }


def _fit(model: SingleTaskGP, warm: dict[str, Any] | None) -> None:
    from botorch.exceptions.errors import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if warm:
        own = model.state_dict()
        usable = {k: v for k, v in warm.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(usable, strict=False)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    try:
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": FIT_MAX_ITERATIONS}})
    except ModelFittingError:  # keep the prior-mode hyperparameters: still a usable model
        model.eval()


def fit_stage_models(
    train_x: np.ndarray,
    cost_usd: np.ndarray,
    log_stage_latency: np.ndarray,
    *,
    groups: Sequence[Sequence[int]],
    seed: int = 0,
    warm_start: Sequence[dict[str, Any] | None] | None = None,
) -> ModelListGP:
    """Per-stage structure: a cost GP plus one GP per function for its stage's log latency.

    Each stage model sees only its own function's CPU and memory (a Matérn 5/2 kernel with
    ``active_dims``), so every trial gives every stage model a point of a 2-D function:
    learnable from a handful of trials whatever the workflow's length. The end-to-end
    latency is composed from the stage outputs by the caller (critical path of the DAG).

    Args:
        train_x: ``n x d`` unit-box inputs.
        cost_usd: ``n`` costs per invocation.
        log_stage_latency: ``n x n_functions`` logs of per-stage tail latency (seconds).
        groups: the dimensions of each function, in the same order as the columns.
        seed / warm_start: as :func:`fit_outcome_models` (one entry per output).

    Returns:
        A fitted ``ModelListGP`` with outputs ``[cost, stage_0, stage_1, ...]``.
    """
    import torch
    from botorch.models.model_list_gp_regression import ModelListGP

    n = len(cost_usd)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = [
            build_gp(train_x, cost_usd, groups=groups, linear_mean=n >= LINEAR_MEAN_MIN_SAMPLES)
        ]
        for j, g in enumerate(groups):
            models.append(
                build_gp(
                    train_x,
                    log_stage_latency[:, j],
                    groups=[g],
                    linear_mean=n >= LINEAR_MEAN_MIN_SAMPLES,
                    mean_dims=g,
                )
            )
        warm = list(warm_start or [None] * len(models))
        if len(warm) != len(models):
            warm = [None] * len(models)
        for m, w in zip(models, warm, strict=True):
            _fit(m, w)
    out = ModelListGP(*models)
    out.eval()
    return out


def fit_outcome_models(
    train_x: np.ndarray,
    cost_usd: np.ndarray,
    log_latency: np.ndarray,
    *,
    groups: Sequence[Sequence[int]] | None = None,
    seed: int = 0,
    warm_start: Sequence[dict[str, Any] | None] | None = None,
) -> ModelListGP:
    """Fit the cost GP and the log-latency GP; a model list with outputs ``[cost, log latency]``.

    Args:
        train_x: ``n x d`` unit-box inputs.
        cost_usd: ``n`` costs per invocation (USD).
        log_latency: ``n`` natural logs of the tail latency (seconds).
        groups: additive structure (see module docstring); None = plain ARD kernel.
        seed: torch seed for the fit (restarts), set in a forked RNG.
        warm_start: hyperparameters (from :func:`hyperparameters`) of the previous fit of
            each model, to start the optimiser there: refits after one new point then take
            a few iterations instead of hundreds.

    Returns:
        A fitted ``ModelListGP`` in eval mode.
    """
    import torch
    from botorch.models.model_list_gp_regression import ModelListGP

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = [
            build_gp(train_x, cost_usd, groups=groups),
            build_gp(
                train_x,
                log_latency,
                groups=groups,
                linear_mean=len(log_latency) >= LINEAR_MEAN_MIN_SAMPLES,
            ),
        ]
        warm = list(warm_start or [None, None])
        for m, w in zip(models, warm, strict=True):
            _fit(m, w)
    out = ModelListGP(*models)
    out.eval()
    return out


# -- one batched GP for every outcome ------------------------------------------------------

_BATCHED_MEAN: Any = None
_BATCHED_MODEL: Any = None
WARM_MAX_ITERATIONS = 6


def _averaging_weights(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output (row of ``masks``), weights that average its CPU coordinates (even
    dimensions) and its memory coordinates (odd ones): two ``m x d`` arrays."""
    m, d = masks.shape
    cpu = np.zeros((m, d))
    mem = np.zeros((m, d))
    for j in range(m):
        on = np.flatnonzero(masks[j])
        cpu_dims = [k for k in on if k % 2 == 0]
        mem_dims = [k for k in on if k % 2 == 1]
        cpu[j, cpu_dims] = 1.0 / max(len(cpu_dims), 1)
        mem[j, mem_dims] = 1.0 / max(len(mem_dims), 1)
    return cpu, mem


def _batched_linear_mean(masks: np.ndarray) -> Any:
    """Per output ``c + w_cpu · avg(its cpu coordinates) + w_mem · avg(its memory coordinates)``
    (the pooled linear mean of :func:`_pooled_linear_mean`, one per batch member)."""
    global _BATCHED_MEAN
    if _BATCHED_MEAN is None:
        import torch
        from gpytorch.means import Mean

        class BatchedPooledLinearMean(Mean):  # type: ignore[misc]
            def __init__(self, masks: np.ndarray) -> None:
                super().__init__()
                m = masks.shape[0]
                cpu, mem = _averaging_weights(masks)
                self.register_buffer("cpu_w", torch.as_tensor(cpu, dtype=torch.float64))
                self.register_buffer("mem_w", torch.as_tensor(mem, dtype=torch.float64))
                self.register_parameter("weights", torch.nn.Parameter(torch.zeros(m, 2)))
                self.register_parameter("bias", torch.nn.Parameter(torch.zeros(m, 1)))

            def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: ... x m x n x d
                cpu = (x * self.cpu_w.unsqueeze(-2)).sum(-1)
                mem = (x * self.mem_w.unsqueeze(-2)).sum(-1)
                out: torch.Tensor = (
                    self.bias + self.weights[:, :1] * cpu + self.weights[:, 1:] * mem
                )
                return out

        _BATCHED_MEAN = BatchedPooledLinearMean
    return _BATCHED_MEAN(masks)


_AMDAHL_MEAN: Any = None
KNEE_PRIOR_SD = 2.5


def _batched_amdahl_mean(
    masks: np.ndarray, shaped: Sequence[bool], log_cores: Any, *, trend: bool
) -> Any:
    """Per output, the pooled linear mean of :func:`_batched_linear_mean`; for the outputs
    flagged in ``shaped`` (a stage's log latency, which reads one function's CPU) Amdahl's law
    in place of the linear CPU term: ``bias + w_mem · memory + log(1 + e^knee / cores)``.

    Latency ``a + b / cores`` is ``log a + softplus(log(b / a) - log cores)`` in logs: flat
    where cores are plentiful, rising like ``1 / cores`` (slope -1 in log-log) where they are
    scarce. A linear mean fitted where the curve is still shallow extrapolates that shallow
    slope below the measured cores and calls a much smaller CPU feasible; this shape bends to
    the slope physics allows. The softplus term is in outcome units: :func:`fit_batched_outcomes`
    sets ``inv_sd`` to 1 / the outcome's standardising spread after the transform has run.

    Args:
        masks: ``m x d`` input dimensions per output.
        shaped: per output, whether it gets the Amdahl CPU term.
        log_cores: unit points (torch, ``... x d``) to the log of their raw values.
        trend: learn the linear weights; False holds them at 0 (few points: the mean is the
            bias plus, for shaped outputs, the Amdahl curve with its two parameters).
    """
    global _AMDAHL_MEAN
    if _AMDAHL_MEAN is None:
        import torch
        from gpytorch.means import Mean
        from gpytorch.priors import NormalPrior

        class BatchedAmdahlMean(Mean):  # type: ignore[misc]
            def __init__(
                self, masks: np.ndarray, shaped: Sequence[bool], log_cores: Any, trend: bool
            ) -> None:
                super().__init__()
                m = masks.shape[0]
                cpu, mem = _averaging_weights(masks)
                flag = torch.as_tensor(np.asarray(shaped, dtype=float), dtype=torch.float64)
                self.register_buffer("cpu_w", torch.as_tensor(cpu, dtype=torch.float64))
                self.register_buffer("mem_w", torch.as_tensor(mem, dtype=torch.float64))
                self.register_buffer("shaped", flag.reshape(m, 1))
                weights = torch.zeros(m, 2, dtype=torch.float64)
                if trend:
                    self.register_parameter("weights", torch.nn.Parameter(weights))
                else:  # another name, so a warm start from a trend fit does not apply
                    self.register_buffer("frozen_weights", weights)
                self.register_parameter("bias", torch.nn.Parameter(torch.zeros(m, 1)))
                self.register_parameter("knee", torch.nn.Parameter(torch.zeros(m, 1)))
                # log(b / a): the cores at which the CPU-bound part equals the rest. Without a
                # prior two points on a flat stretch push it to -inf, where the softplus has
                # no gradient left and the curve never bends again; N(0, KNEE_PRIOR_SD) spans
                # I/O-bound stages (knee at 0.01 core) to CPU-bound ones (150 cores) at 2 sd
                self.register_prior(
                    "knee_prior", NormalPrior(0.0, KNEE_PRIOR_SD), lambda mod: mod.knee
                )
                self.log_cores = log_cores
                self.inv_sd = torch.ones(m, 1, dtype=torch.float64)

            def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: ... x m x n x d
                w = self.weights if hasattr(self, "weights") else self.frozen_weights
                cpu = (x * self.cpu_w.unsqueeze(-2)).sum(-1)
                mem = (x * self.mem_w.unsqueeze(-2)).sum(-1)
                log_c = (self.log_cores(x) * self.cpu_w.unsqueeze(-2)).sum(-1)
                curve = torch.nn.functional.softplus(self.knee - log_c) * self.inv_sd
                linear = w[:, :1] * cpu
                out: torch.Tensor = (
                    self.bias + w[:, 1:] * mem + self.shaped * curve + (1 - self.shaped) * linear
                )
                return out

        _AMDAHL_MEAN = BatchedAmdahlMean
    return _AMDAHL_MEAN(masks, shaped, log_cores, trend)


def _batched_covariance(
    n_dims: int,
    groups: Sequence[Sequence[int]] | None,
    batch: Any,
    effective_dims: Sequence[int] | None = None,
) -> Any:
    """The batch's kernel.

    Without groups: a Matérn 5/2 ARD kernel, outputscale fixed at 1 (outcomes are
    standardised), with the dimension-scaled lengthscale prior of Hvarfner et al. (2024)
    taken per batch member over the dimensions that member reads (``effective_dims``): a
    stage model that reads 2 of 12 dimensions is a 2-D problem. (A free outputscale
    collapsed to ~0 once the linear mean explained the trend, leaving a posterior with no
    uncertainty far from the data.) With groups: an additive kernel, one scaled Matérn per
    group.
    """
    import math

    import torch
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import AdditiveKernel, MaternKernel, ScaleKernel
    from gpytorch.priors import LogNormalPrior

    if not groups:
        dims = torch.as_tensor(
            list(effective_dims) if effective_dims is not None else [n_dims] * batch[0],
            dtype=torch.float64,
        ).clamp_min(1)
        loc = (math.sqrt(2) + 0.5 * dims.log()).reshape(-1, 1, 1)
        prior = LogNormalPrior(loc=loc, scale=torch.full_like(loc, math.sqrt(3)))
        kernel = MaternKernel(
            nu=2.5,
            ard_num_dims=n_dims,
            batch_shape=batch,
            lengthscale_prior=prior,
            lengthscale_constraint=GreaterThan(2.5e-2, transform=None),
        )
        kernel.lengthscale = prior.mode.expand(*batch, 1, n_dims)
        return kernel
    return AdditiveKernel(
        *[
            ScaleKernel(
                get_covar_module_with_dim_scaled_prior(
                    ard_num_dims=len(g),
                    batch_shape=batch,
                    use_rbf_kernel=False,
                    active_dims=list(g),
                ),
                batch_shape=batch,
            )
            for g in groups
        ]
    )


def _batched_model_class() -> Any:
    """``BatchedOutcomes``: a BoTorch ``Model`` over one batched ``SingleTaskGP``."""
    global _BATCHED_MODEL
    if _BATCHED_MODEL is None:
        import torch
        from botorch.models.model import Model
        from botorch.posteriors.gpytorch import GPyTorchPosterior
        from gpytorch.distributions import MultitaskMultivariateNormal

        class BatchedOutcomes(Model):
            """``m`` independent outcomes as one GP batch; output ``j`` reads only the
            input dimensions of ``masks[j]`` (the others are zeroed), so a stage's latency
            depends on its own function's CPU and memory while the cost sees them all.

            ``posterior(X)`` (``b x q x d``) is a multi-output posterior (``b x q x m``):
            the joint of the independent batch members, so Monte-Carlo acquisitions draw
            every outcome from one sampler in one pass.
            """

            def __init__(self, gp: Any, masks: torch.Tensor) -> None:
                super().__init__()
                self.gp = gp
                self.register_buffer("masks", masks)

            @property
            def _masks(self) -> torch.Tensor:
                buffer: torch.Tensor = self.get_buffer("masks")
                return buffer

            @property
            def num_outputs(self) -> int:
                return int(self._masks.shape[0])

            @property
            def batch_shape(self) -> torch.Size:
                return torch.Size([])

            def observation_sd(self) -> np.ndarray:
                """Per output, the fitted measurement-noise standard deviation (outcome
                units): what a new measurement scatters around the latent function."""
                with torch.no_grad():
                    noise = self.gp.likelihood.noise.reshape(-1)
                    scale = self.gp.outcome_transform.stdvs.reshape(-1)
                    sd: np.ndarray = (noise.sqrt() * scale).numpy().astype(float)
                return sd

            def posterior(  # type: ignore[override]  # any keywords, as Model subclasses
                self,
                X: torch.Tensor,
                output_indices: Any = None,
                observation_noise: bool = False,
                posterior_transform: Any = None,
                **kwargs: Any,
            ) -> Any:
                del kwargs
                xm = X.unsqueeze(-3) * self._masks.unsqueeze(-2)  # ... x m x q x d
                post = self.gp.posterior(xm, observation_noise=observation_noise)
                mvn = MultitaskMultivariateNormal.from_batch_mvn(post.distribution, task_dim=-1)
                out = GPyTorchPosterior(mvn)
                if output_indices is not None:
                    raise NotImplementedError("output_indices is not supported")
                if posterior_transform is not None:
                    out = posterior_transform(out)
                return out

        _BATCHED_MODEL = BatchedOutcomes
    return _BATCHED_MODEL


_FLOORED: Any = None


def _floored_standardize(floors: np.ndarray) -> Any:
    """``Standardize`` over a batch of outcomes whose scale is at least ``floors`` (one per
    batch member, outcome units; 0 = none).

    Standardising by the spread of the first few points makes that spread the prior's
    amplitude: three points on a flat stretch of a latency curve (16-24 ms) leave a GP that
    cannot believe a stage 10x slower anywhere, so it calls a 0.1-core step certainly
    feasible. A floor keeps the prior as wide as the outcome's known range."""
    global _FLOORED
    import torch

    if _FLOORED is None:
        from botorch.models.transforms.outcome import Standardize

        class FlooredStandardize(Standardize):
            def __init__(self, floors: torch.Tensor) -> None:
                super().__init__(m=1, batch_shape=torch.Size([floors.numel()]))
                self.register_buffer("floors", floors.reshape(-1, 1, 1))

            def forward(self, Y: Any, Yvar: Any = None, X: Any = None) -> Any:
                if not self.training:
                    return super().forward(Y, Yvar, X)
                super().forward(Y, Yvar, X)  # learns the means and spreads
                self.stdvs = torch.maximum(self.stdvs, self.get_buffer("floors"))
                self._stdvs_sq = self.stdvs.pow(2)
                return (Y - self.means) / self.stdvs, (
                    None if Yvar is None else Yvar / self._stdvs_sq
                )

        _FLOORED = FlooredStandardize
    return _FLOORED(torch.as_tensor(floors, dtype=torch.float64))


def fit_batched_outcomes(
    train_x: np.ndarray,
    outcomes: np.ndarray,
    masks: np.ndarray,
    *,
    groups: Sequence[Sequence[int]] | None = None,
    seed: int = 0,
    warm_start: dict[str, Any] | None = None,
    min_scale: Sequence[float] | None = None,
    cpu_shaped: Sequence[bool] | None = None,
    log_cores: Any = None,
) -> Any:
    """Fit every outcome at once: one ``SingleTaskGP`` with a batch of ``m`` members.

    One L-BFGS run over the summed marginal likelihoods replaces ``m`` separate fits, and
    the posterior of all outcomes is one batched solve (a ``ModelListGP`` does ``m``).

    Args:
        train_x: ``n x d`` unit-box inputs.
        outcomes: ``n x m`` outcomes (e.g. cost, then per-stage log latencies).
        masks: ``m x d`` booleans: the input dimensions each outcome depends on.
        groups: additive structure over the dimensions (None: one ARD kernel).
        seed: torch seed for the fit, in a forked RNG.
        warm_start: :func:`hyperparameters` of the previous fit; the optimiser starts there
            and stops after ``WARM_MAX_ITERATIONS`` (a refit after one new point).
        min_scale: per outcome, the least scale it is standardised by (outcome units; 0 or
            None: its spread alone). The prior's amplitude is then at least this wide
            however little the first points varied (:func:`_floored_standardize`).
        cpu_shaped: per outcome, whether its prior mean follows Amdahl's law in its one
            CPU dimension (:func:`_batched_amdahl_mean`; for log latencies of stages). None or
            all False: the linear mean (a constant one below ``LINEAR_MEAN_MIN_SAMPLES``).
        log_cores: unit points (torch) to log raw values, needed with ``cpu_shaped``.

    Returns:
        A fitted ``BatchedOutcomes`` model with ``num_outputs == m``, in eval mode.
    """
    import torch
    from botorch.exceptions.errors import ModelFittingError
    from botorch.exceptions.warnings import OptimizationWarning
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim.fit import fit_gpytorch_mll_scipy
    from gpytorch.means import ConstantMean
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from linear_operator.utils.errors import NotPSDError

    x = torch.as_tensor(np.asarray(train_x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(outcomes), dtype=torch.float64)
    n, m = y.shape
    mask = torch.as_tensor(np.asarray(masks, dtype=float), dtype=torch.float64)
    xb = x.unsqueeze(0) * mask.unsqueeze(-2)  # m x n x d
    batch = torch.Size([m])
    shaped = cpu_shaped is not None and any(cpu_shaped)
    if shaped and log_cores is None:
        raise ValueError("cpu_shaped needs log_cores")
    if shaped:
        assert cpu_shaped is not None
        if len(cpu_shaped) != m:
            raise ValueError(f"cpu_shaped has {len(cpu_shaped)} flags for {m} outcomes")
        mean = _batched_amdahl_mean(
            np.asarray(masks, dtype=bool),
            cpu_shaped,
            log_cores,
            trend=n >= LINEAR_MEAN_MIN_SAMPLES,
        )
    elif n >= LINEAR_MEAN_MIN_SAMPLES:
        mean = _batched_linear_mean(np.asarray(masks, dtype=bool))
    else:
        mean = ConstantMean(batch_shape=batch)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        gp = SingleTaskGP(
            xb,
            y.T.unsqueeze(-1),
            covar_module=_batched_covariance(
                x.shape[-1], groups, batch, effective_dims=mask.sum(-1).tolist()
            ),
            mean_module=mean,
            outcome_transform=(
                _floored_standardize(np.asarray(min_scale, dtype=float))
                if min_scale is not None and any(v > 0 for v in min_scale)
                else Standardize(m=1, batch_shape=batch)
            ),
        )
        iterations = FIT_MAX_ITERATIONS
        if warm_start:
            own = gp.state_dict()
            usable = {k: v for k, v in warm_start.items() if k in own and own[k].shape == v.shape}
            gp.load_state_dict(usable, strict=False)
            if len(usable) == len(warm_start):
                iterations = WARM_MAX_ITERATIONS
        if shaped:  # the curve in outcome units: 1 / the spread the targets were scaled by
            stdvs: Any = getattr(gp.outcome_transform, "stdvs")  # noqa: B009  # typed loosely
            gp.mean_module.inv_sd = 1.0 / stdvs.detach().reshape(m, 1)
        mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
        mll.train()
        # one L-BFGS-B run on the summed likelihoods, no retries from resampled priors
        # (``fit_gpytorch_mll`` restarts up to 5 times on a line-search warning)
        with contextlib.suppress(ModelFittingError, NotPSDError), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            fit_gpytorch_mll_scipy(mll, options={"maxiter": iterations})
    gp.eval()
    model = _batched_model_class()(gp, mask)
    model.eval()
    return model
