"""Options of ``aquatope-prewarm``: one frozen, validated, keyword-only value object.

:class:`PrewarmConfig` is what :class:`~scheduler.policies.aquatope_prewarm.AquatopePrewarmPolicy`
and :class:`~scheduler.policies.aquatope.AquatopePolicy` are built from; the registry's
``--param k=v`` names are its field names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["BUSY_WAIT_MODELS", "PREWARM_FORECASTERS", "PrewarmConfig", "config_fields"]

# ``lstm-paper``: the paper's pre-warmer (the LSTM's upper bound -> ``ceil`` warm containers);
# ``recent``: the no-forecast special case that reproduces fixed keep-alive (see the policy)
BUSY_WAIT_MODELS = ("share", "queue")
PREWARM_FORECASTERS = ("gp", "lstm", "lstm-paper", "ewma", "last", "seasonal", "recent")


@dataclass(frozen=True, kw_only=True)
class PrewarmConfig:
    """Options of the Aquatope pre-warmer.

    Args:
        forecaster: demand forecaster, one of :data:`PREWARM_FORECASTERS`: ``gp`` (default),
            ``lstm`` (the paper's hybrid Bayesian LSTM feeding this policy's per-replica
            rule), ``lstm-paper`` (the paper's own pool: ``ceil`` of the LSTM's upper
            ``paper_level`` bound), ``ewma``, ``last``, ``seasonal``, or ``recent`` (no
            forecast: replica ``k`` needed for ``recent_window_s`` after concurrency ``k``
            was last seen, i.e. fixed keep-alive).
        step_s: forecast step (seconds; history unit, >= the tick).
        history_steps: steps of history kept per function.
        min_history_steps: steps before the forecaster replaces the EWMA fallback.
        refit_every_steps: steps between hyperparameter refits (conditioning every step).
        refit_every_s: a function's GP is refitted at most this often (seconds), and only
            when its recent traffic changed since the last fit (level or spread).
        max_fit_age_s: a fit older than this is redone even if nothing changed (seconds).
        max_fits_per_tick: LSTM fits one tick may run (the most stale first); the GPs due
            in a tick are fitted together in one batched fit.
        lstm_min_steps: history the LSTM waits for before its first training (the paper
            trains on days; 360 steps of 10 s is an hour).
        lstm_epochs: training epochs of each LSTM fit.
        miss_price_s: the price knob: idle replica-seconds one QoS miss is worth. An arrival
            that finds no warm slot waits a cold start; that costs ``miss_price_s`` when the
            cold start breaks the workflow's QoS target and ``miss_price_s x cold / target``
            otherwise. Any value > 0 (no clamp): near 0 keeps nothing, large keeps much.
        busy_wait: how a later replica's absence is priced (replica ``k >= 2``: an arrival
            that finds ``k - 1`` busy waits for one): ``share`` (default) charges the wait
            (``min(cold, service)``) its share of the target, like a cold start; ``queue``
            charges ``P(the wait outlasts the workflow's slack)`` from an M/M/c queue at the
            load where replica ``k`` is needed (see docs/prewarm.md: cheaper on bursty
            traces, more QoS misses on a dense contended one).
        paper_level: upper-bound level of ``lstm-paper``.
        cold_start_s: cold-start time assumed until one is measured (seconds).
        service_s: service time assumed until one is measured (seconds).
        start_weight: idle replica-seconds charged per second of cold start for each
            replica started (a start takes CPU from the replicas serving; 0 = free); a
            running replica no longer wanted is held that long before it stops.
        host_cores: cores of the host the replicas share (the experiment runner gives the
            simulated or live host's); None = not known, no contention priced.
        contention: price what a start takes from the calls on a saturated host: a start's
            CPU-seconds delay each call running beside it by its share of the cores, and
            that delay is charged as a cold start's is, by its share of the workflow's QoS
            target (see the policy's module docstring, step 5).
        max_start_ratio: at most ``max(1, ceil(ratio x ready))`` replicas start at once;
            0 = no limit.
        recent_window_s: window of the ``recent`` forecaster (seconds).
        calibrate: conformal calibration of the forecast quantiles.
        reactive: the rate seen so far in the current step is a floor on the forecast.
        dag: propagate demand along workflow DAGs.
        gaps: learn idle gaps (sparse functions) for the first replica.
        phase: periodic experts (timers: the same window one, two, ... periods ago) for the
            first replica; the rate forecast, the idle-gap hazard and these are mixed by
            how well each has predicted the function's calls so far.
        phase_tol_s: how far each past window of the periodic experts is widened on both
            sides (seconds), for clock jitter. On exact timers a widened window is
            confidently wrong on the ticks at a call window's edges and the mixture then
            prefers the idle-gap hazard; 0 saves idle there at low miss prices and costs it
            at high ones (measured in docs/benchmarks.md). A list (e.g. ``[0, 1]``) gives
            every period one expert per width, and the mixture picks.
        phase_alpha: pseudo-cycles with which each periodic expert is shrunk towards the
            base rate: an expert that saw no call in ``K`` past windows says
            ``alpha x base / (K + alpha)``, so it is the floor a confident periodic expert
            puts under the first replica's probability between calls. A list (e.g.
            ``[1, 0.1]``) gives every period and width one expert per shrinkage, and the
            mixture picks.
        seed: seed of the model fits.

    Raises:
        ValueError: a field out of range (the message names it).
    """

    forecaster: str = "gp"
    step_s: float = 10.0
    history_steps: int = 720
    min_history_steps: int = 12
    refit_every_steps: int = 6
    refit_every_s: float = 60.0
    max_fit_age_s: float = 21600.0
    max_fits_per_tick: int = 1
    lstm_min_steps: int = 360
    lstm_epochs: int = 15
    miss_price_s: float = 600.0
    busy_wait: str = "share"
    paper_level: float = 0.95
    cold_start_s: float = 1.0
    service_s: float = 0.5
    start_weight: float = 1.0
    host_cores: float | None = None
    contention: bool = True
    max_start_ratio: float = 1.0
    recent_window_s: float = 600.0
    calibrate: bool = True
    reactive: bool = True
    dag: bool = True
    gaps: bool = True
    phase: bool = True
    phase_tol_s: float | tuple[float, ...] = 1.0
    phase_alpha: float | tuple[float, ...] = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"PrewarmConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        if self.forecaster not in PREWARM_FORECASTERS:
            raise bad("forecaster", f"one of {PREWARM_FORECASTERS}")
        for name in (
            "step_s",
            "miss_price_s",
            "cold_start_s",
            "service_s",
            "recent_window_s",
        ):
            if not float(getattr(self, name)) > 0:
                raise bad(name, "> 0")
        for name in (
            "refit_every_s",
            "max_fit_age_s",
            "start_weight",
            "max_start_ratio",
        ):
            if not float(getattr(self, name)) >= 0:
                raise bad(name, ">= 0")
        widths = _numbers(self.phase_tol_s)
        if widths is None or not all(w >= 0 for w in widths):
            raise bad("phase_tol_s", ">= 0 (seconds) or a non-empty list of such")
        if not isinstance(self.phase_tol_s, (int, float)):
            object.__setattr__(self, "phase_tol_s", widths)
        alphas = _numbers(self.phase_alpha)
        if alphas is None or not all(a > 0 for a in alphas):
            raise bad("phase_alpha", "> 0 or a non-empty list of such")
        if not isinstance(self.phase_alpha, (int, float)):
            object.__setattr__(self, "phase_alpha", alphas)
        if self.min_history_steps < 4:
            raise bad("min_history_steps", ">= 4")
        if self.history_steps < self.min_history_steps:
            raise bad("history_steps", ">= min_history_steps")
        for name in ("refit_every_steps", "max_fits_per_tick", "lstm_epochs"):
            if int(getattr(self, name)) < 1:
                raise bad(name, ">= 1")
        if self.lstm_min_steps < 68:
            raise bad("lstm_min_steps", ">= 68 (the LSTM's 48 + 12 + 8 steps)")
        if self.host_cores is not None and not _positive_finite(self.host_cores):
            raise bad("host_cores", "> 0 and finite, or None")
        if self.busy_wait not in BUSY_WAIT_MODELS:
            raise bad("busy_wait", f"one of {BUSY_WAIT_MODELS}")
        if not 0.0 < self.paper_level < 1.0:
            raise bad("paper_level", "in (0, 1)")


def _positive_finite(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number > 0 and math.isfinite(number)


def _numbers(value: Any) -> tuple[float, ...] | None:
    """A number or a non-empty list of numbers as a tuple, None when it is neither."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (float(value),)
        if isinstance(value, (list, tuple)) and value:
            return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        pass
    return None


def config_fields() -> dict[str, tuple[str, Any]]:
    """Field name -> (annotation, default) of :class:`PrewarmConfig`, in order."""
    return {f.name: (str(f.type), f.default) for f in fields(PrewarmConfig)}
