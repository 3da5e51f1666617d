"""Aquatope's configurator: safe, constrained Bayesian optimisation over the sizing lattice.

What it does per :meth:`AquatopeConfigurator.propose` call:

1. **Warm start.** Until the profiling ladder is done it proposes a few *profiling runs*:
   every function scaled down together to fixed points of the (log-warped) unit box, going
   lower only while the previous rung met the QoS target. Samples handed in from earlier
   profiling (a previous session, another load) count too.
2. **Models.** A cost GP and latency GPs (:mod:`~scheduler.configure.surrogate`), float64.
   When trials report each function's replica-seconds, the cost is not learned as one
   function of every dimension: it is the known price of each function's (cpu, memory)
   times its replica-seconds, each learned over that function's two dimensions.
   With the workflow DAG and samples carrying per-stage latencies, one GP per stage over
   that function's two dimensions, composed along the DAG's critical path; otherwise one
   end-to-end log-latency GP (additive per function for 3+ functions).
3. **Acquisition.** Constrained qLogNEI (BoTorch's ``qLogNoisyExpectedImprovement``) with the
   objective ``-cost`` and the constraint ``log latency - log target <= 0``.
4. **Safe exploration.** Candidates whose probability of meeting the QoS is below
   ``pof_threshold`` are ranked below every safe one, and the search is confined to a trust
   region (an L∞ box in the unit space) around the cheapest feasible configuration, which
   grows after an improvement and shrinks after repeated misses (as in TuRBO).
   P(feasible) is the probability that a *measurement* meets the target: a quasi-Monte-Carlo
   estimate over the joint posterior plus each latency model's fitted measurement noise.
5. **Discrete search.** The acquisition is maximised over the lattice itself
   (:func:`lattice_local_search`: random lattice starts plus the incumbent, then greedy moves
   of one or two lattice steps along one dimension, every restart's neighbours scored in one
   batch), never over a continuous relaxation that would be rounded afterwards.
6. **Stopping.** ``None`` once the best expected improvement stays below ``stop_rel_ei`` of
   the incumbent's cost for ``stop_patience`` proposals, or no safe candidate is left.

The paper's version (10 random initial points then qNEI, no safety) spends real QoS on
infeasible trials; this one trades a little speed for far fewer of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from scheduler._threads import single_thread
from scheduler.configure.base import ConfigSample
from scheduler.configure.objectives import (
    Constraint,
    best_feasible,
    is_feasible,
    latency_target,
)
from scheduler.configure.space import Configuration, SearchSpace
from scheduler.configure.surrogate import (
    ADDITIVE_MIN_FUNCTIONS,
    LINEAR_MEAN_MIN_SAMPLES,
    fit_batched_outcomes,
    hyperparameters,
    quiet_numerics,
)
from scheduler.configure.transform import UnitTransform, Warp
from testbed.core.platform import Workflow
from testbed.core.prices import decoupled_usd_per_s

__all__ = ["AquatopeConfigurator", "BOStep"]

PROFILE_LEVELS = (1.0, 0.7, 0.45)
LATENCY_CAP_FACTOR = 3.0
MAX_TRUST_RADIUS = 0.5


class BOStep:
    """Diagnostics of the last BO step (read by benchmarks and the CLI).

    Attributes:
        log_ei: log expected improvement of the proposal.
        pof: its probability of feasibility.
        trust_radius: the trust region's half-width in the unit box.
    """

    def __init__(self, log_ei: float, pof: float, trust_radius: float) -> None:
        self.log_ei = log_ei
        self.pof = pof
        self.trust_radius = trust_radius

    def __repr__(self) -> str:
        return f"BOStep(log_ei={self.log_ei:.3g}, pof={self.pof:.3f}, r={self.trust_radius:.3f})"


class AquatopeConfigurator:
    """Safe constrained qLogNEI over per-function CPU and memory.

    Minimises ``cost_usd`` subject to the constraints. Exactly one
    :class:`~scheduler.configure.objectives.LatencyConstraint` is modelled; other constraint
    callables are checked on measured outcomes only (they decide which samples count as
    feasible incumbents).

    Args:
        space: the lattice to search.
        constraints: constraint callables; must include a ``LatencyConstraint``.
        seed: seeds model fitting, Monte-Carlo sampling and the discrete search.
        n_profile: profiling rungs (all-max included) before BO starts.
        pof_threshold: minimum probability of feasibility of a proposal (0 disables).
        trust_region: confine proposals to a box around the cheapest feasible point.
        trust_radius: initial half-width of that box in the unit space.
        mc_samples: quasi-Monte-Carlo samples for qLogNEI (the paper used 32).
        stop_rel_ei: stop when expected improvement / incumbent cost stays below this.
        stop_patience: ... for this many consecutive proposals.
        additive: force the additive kernel on/off (default: on for 3+ functions).
        warp: unit-box warp, ``"log"`` or ``"linear"``.
        raw_samples / num_restarts: size of the discrete search.
        workflow: the workflow DAG; with it, and samples that carry per-stage latencies,
            the latency is modelled per stage and composed along the critical path.
        structure: ``"auto"`` (per stage when possible), ``"stages"`` or ``"e2e"`` (one
            end-to-end latency GP).
        qos_margin: the models aim at ``target × (1 - qos_margin)``: headroom on top of
            the measurement noise, which P(feasible) already includes (samples are still
            judged against the real target).
        log_prior_sd: the least prior standard deviation of a log outcome (log latency, log
            replica-seconds), whatever the spread of the points so far: 1 lets any stage be
            e (2.7) times slower than its mean away from the data until points say otherwise
            (0: the spread of the points alone).
        amdahl_mean: a stage's log-latency model has Amdahl's law in its CPU as prior mean
            (``a + b / cores``: flat with plenty of cores, ``1 / cores`` when scarce) instead
            of a straight line in log cores, so a shallow slope measured at large sizes is
            not extrapolated to small ones (per-stage structure only).

    Raises:
        ValueError: no latency constraint, or settings out of range.
    """

    name = "aquatope"

    def __init__(
        self,
        space: SearchSpace,
        constraints: Sequence[Constraint],
        *,
        seed: int = 0,
        n_profile: int = 2,
        pof_threshold: float = 0.85,
        trust_region: bool = True,
        trust_radius: float = 0.3,
        mc_samples: int = 32,
        stop_rel_ei: float = 1e-3,
        stop_patience: int = 3,
        additive: bool | None = None,
        warp: Warp = "log",
        raw_samples: int = 128,
        num_restarts: int = 3,
        workflow: Workflow | None = None,
        structure: str = "auto",
        qos_margin: float = 0.0,
        log_prior_sd: float = 1.0,
        amdahl_mean: bool = True,
    ) -> None:
        target = latency_target(constraints)
        if target is None:
            raise ValueError("AquatopeConfigurator needs a LatencyConstraint among constraints")
        if not 0 <= pof_threshold < 1:
            raise ValueError(f"pof_threshold must be in [0, 1), got {pof_threshold}")
        if not 0 < trust_radius <= 1:
            raise ValueError(f"trust_radius must be in (0, 1], got {trust_radius}")
        if not 0 <= qos_margin < 0.5:
            raise ValueError(f"qos_margin must be in [0, 0.5), got {qos_margin}")
        if not 0 <= log_prior_sd < 10:
            raise ValueError(f"log_prior_sd must be in [0, 10), got {log_prior_sd}")
        if structure not in ("auto", "stages", "e2e"):
            raise ValueError(f"structure must be auto, stages or e2e, got {structure!r}")
        if structure == "stages" and workflow is None:
            raise ValueError("structure='stages' needs the workflow DAG")
        if workflow is not None and set(workflow.functions) != set(space.names):
            raise ValueError("the workflow's functions must be the space's functions")
        if n_profile < 1 or mc_samples < 1 or stop_patience < 1:
            raise ValueError("n_profile, mc_samples and stop_patience must be >= 1")
        self.space = space
        self.workflow = workflow
        self.structure = structure
        self.constraints = list(constraints)
        self.target_s = target
        self.qos_margin = qos_margin
        self.log_prior_sd = log_prior_sd
        self.amdahl_mean = bool(amdahl_mean)
        self.seed = seed
        self.n_profile = min(n_profile, len(PROFILE_LEVELS))
        self.pof_threshold = pof_threshold
        self.use_trust_region = trust_region
        self.mc_samples = mc_samples
        self.stop_rel_ei = stop_rel_ei
        self.stop_patience = stop_patience
        self.additive = (
            len(space.functions) >= ADDITIVE_MIN_FUNCTIONS if additive is None else additive
        )
        self.transform = UnitTransform(space, warp=warp)
        self.raw_samples = raw_samples
        self.num_restarts = num_restarts
        self.stop_reason = ""
        self.last_step: BOStep | None = None
        self._radius = trust_radius
        self._radius_init = trust_radius
        self._fails = 0
        self._seen = 0
        self._best_cost = math.inf
        self._low_ei = 0
        self._steps = 0
        self.source = "probe"
        self._warm: dict[str, Any] | None = None

    # -- warm start --------------------------------------------------------------------
    def _ladder(self) -> list[Configuration]:
        out = []
        for level in PROFILE_LEVELS[: self.n_profile]:
            x = np.full(self.space.n_dims, level)
            out.append(self.transform.from_unit(x)[0])
        return out

    def _profile_next(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        tried = {s.config: s for s in samples}
        previous_ok = True
        for config in self._ladder():
            if config in tried:
                previous_ok = is_feasible(tried[config], self.constraints)
                continue
            return config if previous_ok else None
        return None

    # -- trust region bookkeeping --------------------------------------------------------
    def _update_trust_region(self, samples: Sequence[ConfigSample]) -> None:
        """TuRBO-style: grow after an improvement, shrink after ``max(3, d/2)`` misses in a
        row, and start over at the initial radius (around the incumbent) once it collapses.
        It grows only once the models have the points for a trend (their linear mean): an
        early improvement says the last step was safe, not that a longer one is."""
        tolerance = max(3, self.space.n_dims // 2)
        for i, s in enumerate(samples[self._seen :], start=self._seen):
            if is_feasible(s, self.constraints) and s.cost_usd < self._best_cost * (1 - 1e-3):
                grows = s.source == "bo" and i >= LINEAR_MEAN_MIN_SAMPLES
                if math.isfinite(self._best_cost) and grows:
                    self._radius = min(MAX_TRUST_RADIUS, self._radius * 1.5)
                self._best_cost = s.cost_usd
                self._fails = 0
            elif s.source == "bo":
                self._fails += 1
                if self._fails >= tolerance:
                    self._radius /= 2
                    self._fails = 0
                    if self._radius < 0.05:
                        self._radius = self._radius_init
        self._seen = len(samples)

    # -- main entry ----------------------------------------------------------------------
    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        """The next configuration to try, or None when the stopping rule fires.

        Args:
            samples: every trial so far (probe, profiling and BO trials), oldest first.

        Returns:
            A lattice configuration, or None (see ``stop_reason``).
        """
        self._update_trust_region(samples)
        if not samples:
            return self.space.all_max()
        profile = self._profile_next(samples)
        if profile is not None:
            self.source = "profile"
            return profile
        if best_feasible(samples, self.constraints) is None:
            self.stop_reason = "no feasible configuration measured yet"
            return None
        with single_thread():  # faster for models this small, and repeatable
            return self._bo(samples)

    def _stage_mode(self, samples: Sequence[ConfigSample]) -> bool:
        if self.workflow is None or self.structure == "e2e":
            return False
        names = set(self.space.names)
        return all(
            s.measurement.failed or set(s.measurement.stage_latency_s) >= names for s in samples
        )

    def _log_replica_s(self, samples: Sequence[ConfigSample]) -> np.ndarray | None:
        """``n x functions`` log replica-seconds per invocation, or None when a trial that
        ran lacks them (the cost is then one GP over every dimension). A failed trial without
        them (e.g. an excluded region) gets each function's median."""
        names = self.space.names
        rows: list[list[float] | None] = []
        for s in samples:
            got = s.measurement.stage_replica_s
            if set(got) >= set(names):
                rows.append([math.log(max(got[f], 1e-9)) for f in names])
            elif s.measurement.failed:
                rows.append(None)
            else:
                return None
        known = np.array([r for r in rows if r is not None])
        if len(known) < 2:
            return None
        median = np.median(known, axis=0).tolist()
        return np.array([r if r is not None else median for r in rows])

    def _structured_negative_cost(self, Z: Any, X: Any = None) -> Any:
        """MC objective: ``-sum_f price_f(X) * exp(Z_f)`` (outputs 0..n-1: log replica-s)."""
        if X is None:
            raise ValueError("the structured cost needs the candidate points")
        values = self.transform.values_of_unit(X)
        price: Any = decoupled_usd_per_s(values[..., 0::2], values[..., 1::2])  # elementwise
        n_f = price.shape[-1]
        return -(price * Z[..., :n_f].exp()).sum(-1)

    def _bo(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        import torch

        # BoTorch draws from torch's global generator (baseline pruning), which torch seeds
        # at random per process: a forked, seeded one keeps a proposal repeatable
        with quiet_numerics(), torch.random.fork_rng():
            torch.manual_seed(self.seed * 1000 + self._steps)
            return self._bo_step(samples)

    def _bo_step(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        import torch
        from botorch.sampling.normal import SobolQMCNormalSampler

        dtype = torch.float64
        incumbent = best_feasible(samples, self.constraints)
        assert incumbent is not None
        x_np = self.transform.to_unit([s.config for s in samples])
        cost = np.array([s.cost_usd for s in samples])
        cap = math.log(LATENCY_CAP_FACTOR * self.target_s)
        failed = np.array([s.measurement.failed for s in samples])
        log_lat = np.minimum(np.log([s.latency_s for s in samples]), cap)
        log_lat = np.where(failed, cap, log_lat)
        self._steps += 1
        step_seed = self.seed * 1000 + self._steps
        log_target = math.log(self.target_s * (1 - self.qos_margin))
        objective: Callable[..., Any] = _negative_cost
        if self._stage_mode(samples):
            names = self.space.names
            n_f = len(names)
            stage = np.array(
                [
                    [
                        math.log(max(s.measurement.stage_latency_s.get(f, 0.0), 1e-6))
                        if not s.measurement.failed
                        else cap
                        for f in names
                    ]
                    for s in samples
                ]
            )
            stage = np.minimum(stage, cap)
            own = np.zeros((n_f, self.space.n_dims), dtype=bool)
            for j, g in enumerate(self.space.groups):
                own[j, list(g)] = True  # function j: its own CPU and memory
            replica_s = self._log_replica_s(samples)
            if replica_s is not None:
                # cost = sum_f price_f(cpu, memory) * replica-seconds_f: the price is known,
                # so only each function's replica-seconds is learned, over its 2 dimensions
                columns, masks, lat_from = (
                    np.column_stack([replica_s, stage]),
                    np.vstack([own, own]),
                    n_f,
                )
                objective = self._structured_negative_cost
            else:
                masks = np.vstack([np.ones((1, self.space.n_dims), dtype=bool), own])
                columns, lat_from = np.column_stack([cost, stage]), 1
            floors = [self.log_prior_sd] * columns.shape[1]  # logs, but for a raw cost
            if replica_s is None:
                floors[0] = 0.0
            model = fit_batched_outcomes(
                x_np,
                columns,
                masks,
                groups=None,  # one ARD kernel: an output's masked inputs leave it 2-D
                seed=step_seed,
                warm_start=self._warm,
                min_scale=floors,
                cpu_shaped=[j >= lat_from for j in range(columns.shape[1])]
                if self.amdahl_mean
                else None,
                log_cores=self.transform.log_values_of_unit,
            )
            compose = _critical_path_fn(self.workflow, names)  # type: ignore[arg-type]
            ok = ~failed
            composed = np.array([compose(torch.as_tensor(np.exp(r))).item() for r in stage])
            # measured end-to-end tail over the composed stage tails (tails do not add exactly)
            ratio = np.log(np.exp(log_lat[ok]) / composed[ok]) if ok.any() else np.zeros(1)
            log_ratio = float(np.mean(ratio))

            # a trial is judged on *measured* latencies: compose the posterior samples plus
            # each stage's fitted measurement noise (the largest of k noisy parallel stages
            # lies above the largest latent one), then the end-to-end tail's own scatter
            # around the composed one; fixed draws per sample count
            noise = _NoiseDraws(
                np.append(model.observation_sd()[lat_from:], np.std(ratio)), seed=step_seed
            )

            def log_latency(Z: torch.Tensor) -> torch.Tensor:
                draws = noise.like(Z)
                noisy = Z[..., lat_from:] + draws[..., :n_f]
                out: torch.Tensor = compose(noisy.exp()).log() + log_ratio + draws[..., n_f]
                return out

        else:
            groups = self.space.groups if self.additive else None
            model = fit_batched_outcomes(
                x_np,
                np.column_stack([cost, log_lat]),
                np.ones((2, self.space.n_dims), dtype=bool),
                groups=groups,
                seed=step_seed,
                warm_start=self._warm,
                min_scale=[0.0, self.log_prior_sd],
            )

            e2e_noise = _NoiseDraws(model.observation_sd()[1:], seed=step_seed)

            def log_latency(Z: torch.Tensor) -> torch.Tensor:
                noisy: torch.Tensor = Z[..., 1] + e2e_noise.like(Z)[..., 0]
                return noisy

        self._warm = hyperparameters(model.gp)
        x_train = torch.as_tensor(x_np, dtype=dtype)
        safe = _safe_log_nei(
            model=model,
            X_baseline=x_train,
            sampler=SobolQMCNormalSampler(
                sample_shape=torch.Size([self.mc_samples]), seed=step_seed
            ),
            constraint=lambda Z: log_latency(Z) - log_target,
            threshold=self.pof_threshold,
            objective=objective,
        )
        center = self.transform.to_unit([incumbent.config])[0]
        choices = []
        for d, values in enumerate(self.transform.choices()):
            if self.use_trust_region:
                keep = values[np.abs(values - center[d]) <= self._radius + 1e-9]
                values = keep if keep.size else values
            choices.append(torch.as_tensor(values, dtype=dtype))
        cand = lattice_local_search(
            safe,
            [c.numpy() for c in choices],
            avoid=x_np,
            start=center,
            rng=np.random.default_rng(step_seed),
            raw_samples=self.raw_samples,
            num_restarts=self.num_restarts,
        )
        with torch.no_grad():
            safe(cand.unsqueeze(0))
            log_ei, pof = float(safe.last_log_ei.item()), float(safe.last_pof.item())
        self.last_step = BOStep(log_ei, pof, self._radius)
        if self.pof_threshold > 0 and pof < self.pof_threshold:
            if self.use_trust_region and self._radius < 1.0:
                self._radius = min(1.0, self._radius * 2)
            self.stop_reason = f"no safe candidate left (best P(feasible) {pof:.2f})"
            return None
        rel_ei = math.exp(log_ei) / max(incumbent.cost_usd, 1e-300)
        self._low_ei = self._low_ei + 1 if rel_ei < self.stop_rel_ei else 0
        if self._low_ei >= self.stop_patience:
            self.stop_reason = (
                f"expected improvement below {self.stop_rel_ei:.1%} of the best cost "
                f"for {self.stop_patience} steps"
            )
            return None
        self.source = "bo"
        return self.transform.from_unit(cand.detach().numpy())[0]


def lattice_local_search(
    acq: Any,
    choices: Sequence[np.ndarray],
    *,
    avoid: np.ndarray,
    start: np.ndarray,
    rng: np.random.Generator,
    raw_samples: int = 128,
    num_restarts: int = 3,
    max_moves: int = 25,
    steps: Sequence[int] = (-8, -4, -2, -1, 1, 2, 4, 8),
) -> Any:
    """Maximise ``acq`` over the product lattice ``choices`` (unit-box values per dimension).

    Scores ``raw_samples`` random lattice points and the point nearest ``start``, keeps the
    best ``num_restarts`` as starts, then moves each to its best neighbour (one coordinate
    moved by ``steps`` lattice positions) while that improves; all neighbours of all starts
    are scored in one batch per move. Points in ``avoid`` (already tried) are never
    returned, unless nothing else is left.

    Returns:
        The best point as a ``1 x d`` float64 tensor.
    """
    import torch

    sizes = np.array([len(c) for c in choices])
    d = len(choices)

    def to_x(idx: np.ndarray) -> torch.Tensor:
        cols = [choices[j][idx[:, j]] for j in range(d)]
        return torch.as_tensor(np.stack(cols, axis=1), dtype=torch.float64).unsqueeze(-2)

    def nearest(x: np.ndarray) -> np.ndarray:
        return np.array([int(np.abs(choices[j] - x[j]).argmin()) for j in range(d)])

    tried = {tuple(nearest(a)) for a in np.atleast_2d(avoid)}

    def score(idx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            values = acq(to_x(idx)).detach().numpy().astype(float)
        bad = np.array([tuple(i) in tried for i in idx])
        return np.where(bad, -np.inf, values)

    raw = np.stack([rng.integers(0, n, raw_samples) for n in sizes], axis=1)
    raw = np.vstack([nearest(start)[None, :], raw])
    raw_scores = score(raw)
    order = np.argsort(-raw_scores)
    current = raw[order[:num_restarts]].copy()
    current_scores = raw_scores[order[:num_restarts]].copy()
    for _ in range(max_moves):
        moves = []
        owner = []
        for r, idx in enumerate(current):
            for j in range(d):
                for step in steps:
                    k = idx[j] + step
                    if 0 <= k < sizes[j]:
                        nb = idx.copy()
                        nb[j] = k
                        moves.append(nb)
                        owner.append(r)
        if not moves:
            break
        cand = np.array(moves)
        owners = np.array(owner)
        values = score(cand)
        improved = False
        for r in range(len(current)):
            mine = np.flatnonzero(owners == r)
            best = mine[np.argmax(values[mine])]
            if values[best] > current_scores[r] + 1e-12:
                current[r], current_scores[r] = cand[best], values[best]
                improved = True
        if not improved:
            break
    best = int(np.argmax(current_scores))
    if not np.isfinite(current_scores[best]):  # everything near was tried: any untried point
        return to_x(raw[order[0]][None, :])[0]
    return to_x(current[best][None, :])[0]


class _NoiseDraws:
    """Fixed standard-normal draws times per-output standard deviations, one set per leading
    (Monte-Carlo sample) size: for samples ``Z`` of shape ``S x ... x m``, :meth:`like`
    gives ``S x 1 x ... x len(sd)``, which broadcasts over ``Z``'s middle dimensions."""

    def __init__(self, sd: np.ndarray, *, seed: int) -> None:
        self.sd = np.asarray(sd, dtype=float)
        self.seed = seed
        self._cache: dict[int, Any] = {}

    def like(self, Z: Any) -> Any:
        import torch

        n = int(Z.shape[0])
        if n not in self._cache:
            rng = np.random.default_rng([self.seed, n])
            self._cache[n] = torch.as_tensor(
                rng.standard_normal((n, len(self.sd))) * self.sd, dtype=Z.dtype
            )
        draws = self._cache[n]
        return draws.reshape((n,) + (1,) * (Z.dim() - 2) + (len(self.sd),))


def _negative_cost(Z: Any, X: Any = None) -> Any:
    """MC objective: maximise ``-cost`` (output 0 of the model list)."""
    del X
    return -Z[..., 0]


def _critical_path_fn(workflow: Workflow, names: Sequence[str]) -> Any:
    """``stage latencies (..., n_functions) -> end-to-end latency (...)`` over the DAG."""
    import torch

    column = {f: i for i, f in enumerate(names)}
    order = workflow.topological_order()

    def compose(lat: torch.Tensor) -> torch.Tensor:
        finish: dict[str, torch.Tensor] = {}
        for stage in order:
            own = lat[..., column[stage.function]]
            if stage.after:
                before = torch.stack([finish[d] for d in stage.after], dim=-1).amax(-1)
                finish[stage.name] = own + before
            else:
                finish[stage.name] = own
        sinks = [finish[s] for s in workflow.sinks]
        return torch.stack(sinks, dim=-1).amax(-1)

    return compose


_SAFE_LOG_NEI: Any = None


def _safe_log_nei(
    *,
    model: Any,
    X_baseline: Any,
    sampler: Any,
    constraint: Any,
    threshold: float,
    objective: Callable[..., Any] = _negative_cost,
) -> Any:
    """Constrained qLogNEI whose candidates with P(feasible) below ``threshold`` rank last.

    P(feasible) comes from the *same* posterior samples qLogNEI draws (one posterior, one
    sampler pass per evaluation): the share of samples, through a smooth indicator, whose
    constraint value is <= 0. Works for the composed per-stage latency too. The class is
    built on first use so this module imports without torch.
    """
    global _SAFE_LOG_NEI
    if _SAFE_LOG_NEI is None:
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.utils.transforms import t_batch_mode_transform

        class SafeLogNEI(qLogNoisyExpectedImprovement):
            def _get_samples_and_objectives(self, X: torch.Tensor) -> Any:
                samples, obj = super()._get_samples_and_objectives(X)
                self._candidate_samples = samples  # S x b x q x m, the q new points
                return samples, obj

            @t_batch_mode_transform()  # type: ignore[arg-type]  # untyped decorator
            def forward(self, X: torch.Tensor) -> torch.Tensor:
                value = super().forward(X)
                Z = self._candidate_samples
                feasibility = cast(Callable[[torch.Tensor], torch.Tensor], self._feasibility)
                ok = torch.sigmoid(-feasibility(Z) / 0.01)  # smooth indicator
                pof = ok.prod(-1).mean(0)  # every q point feasible
                self.last_log_ei, self.last_pof = value, pof
                log_pof = pof.clamp_min(1e-300).log()
                threshold = cast(float, self._log_threshold)  # a float, set by _safe_log_nei
                unsafe = log_pof < threshold
                return torch.where(unsafe, -1e5 + log_pof.clamp_min(-1e4), value)

        _SAFE_LOG_NEI = SafeLogNEI
    from botorch.acquisition.objective import GenericMCObjective

    acq = _SAFE_LOG_NEI(
        model=model,
        X_baseline=X_baseline,
        sampler=sampler,
        objective=GenericMCObjective(objective),
        constraints=[constraint],
        eta=1e-2,
        prune_baseline=True,
        cache_root=False,
    )
    acq._feasibility = constraint
    acq._log_threshold = math.log(threshold) if threshold > 0 else -math.inf
    return acq
