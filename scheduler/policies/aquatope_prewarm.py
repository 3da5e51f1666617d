"""Policy ``aquatope-prewarm``: per-replica pre-warming from predicted demand.

Each tick (pure; time comes in ``Observation.now_s``), per function:

1. **History.** Arrivals are summed into steps of ``step_s`` seconds (ring buffer of
   ``history_steps``); the idle gaps between ticks with calls feed a
   :class:`~scheduler.forecast.gaps.GapModel` (sparse calls) and the ticks with calls an
   :class:`~scheduler.forecast.phase.ActivityLog` (timers' phases).
2. **Forecast** at each step boundary: the forecaster (``gp`` by default; EWMA until
   ``min_history_steps``) gives each coming step's count; a
   :class:`~scheduler.forecast.calibrate.ConformalCalibrator` turns mean and spread into
   calibrated quantiles at the 13 :data:`SIZING_LEVELS` (decile midpoints and a finer upper
   tail) that are exactly the rate scenarios the decision uses, so calibration tracks the
   levels the pool is sized from. Fits are amortised: a function is refitted at most once per
   ``refit_every_s`` and only when its traffic changed (or the fit is ``max_fit_age_s`` old);
   the GPs due in a tick are fitted together in one batched fit; LSTM fits are rationed
   (``max_fits_per_tick``, most stale first); other steps only re-condition.
3. **Scenarios** for the look-ahead ``H = cold start + tick`` (a replica dropped now is back
   only after that): each level's largest rate over the steps ``H`` touches, floored by the
   rate seen so far in this step (``reactive``; the step's first batch, the calls of its
   first tick with calls, is not a rate: a timer firing many calls at once), and
   propagated along workflow DAGs (:class:`~scheduler.forecast.dag.DagPropagator`,
   upstream paths delayed by the upstream's fractional latency in steps).
4. **Need per replica** (:func:`~scheduler.forecast.pool.replica_need`):
   ``P_k = P(concurrency >= (k-1) m + 1 within H)`` (``m`` requests per replica) from the
   scenarios. For an idle function the first replica's need is a mixture of experts
   (:class:`~scheduler.forecast.mixture.ExpertMixture`): that forecast, the gap model's
   hazard ``P(call within H | idle so far)``, the base rate and periodic experts that read
   the same window one, two, ... periods ago
   (:class:`~scheduler.forecast.phase.PeriodicExperts`: merged and thinned timers), each
   weighted by its log score on this function's idle ticks so far (the forecast alone until
   :data:`_MIN_SCORED` ticks are scored); replicas ``k >= 2`` are capped by it, and calls
   seen in the current step (own or upstream) keep the forecast as a floor. Requests in
   flight upstream are concurrency, not a count per step: each of ``n`` running upstream
   calls brings ``c = weight x gain x min(1, S_d / S_u)`` concurrent calls here, ``floor(c)``
   sure and one more with probability ``c - floor(c)`` (a branch taken by one call in five
   is a 0.2 chance of a call, priced like any other need, not a sure replica)
   (:func:`~scheduler.forecast.pool.imminent_need`). The first replica is needed when any
   call arrives within ``H``, however short: each call running at an ancestor up to
   :data:`_DAG_HOPS` stages up brings ``path weight x clip((H - D) / S_a, 0, 1)`` calls by
   then (the chance it finishes early enough for the stages between, ``D`` of service, to be
   done within ``H``; a queued call waits for its replica's start first), so the torch stages
   behind a 2 s first stage are started while its call runs.
5. **Decide per replica** (:func:`~scheduler.forecast.pool.replicas_worth_keeping`): keep
   (or start) replica ``k`` while ``P_k x blocked_cost > H`` (plus ``start_weight x cold``
   for a replica not yet running or starting). ``blocked_cost`` is the price of the QoS miss
   a cold start causes: ``miss_price_s`` idle replica-seconds when the cold start exceeds the
   strictest QoS target of the function's workflows, ``miss_price_s x cold / target``
   otherwise (every cold start counts for a function outside any workflow). Replicas
   ``k >= 2`` are priced the same way by a shorter delay: without replica ``k`` an arrival
   waits for one of the ``k - 1`` busy ones to finish a call (``min(cold, service)``), not for
   a cold start (``busy_wait="queue"`` prices instead the chance that an M/M/c wait outlasts
   the workflow's slack: :meth:`AquatopePrewarmPolicy._busy_costs`). A start on a
   saturated host (``host_cores``, given by the experiment runner) also pays for the calls
   it slows: its CPU-seconds delay each call running beside it by their share of the cores,
   and each second of delay is priced as a cold start's, by its share of the workflow's
   target (:meth:`AquatopePrewarmPolicy._contention_cost`; the first replica only for the
   chance its call does not come, as the platform starts one for the call anyway). One knob,
   ``miss_price_s``; zero replicas are always a choice.
6. **Floors.** Replicas serving requests are kept; while requests are queued or a replica
   is starting, every replica running or starting is kept (a scale-down cancels starting
   replicas first: that strands a queue, and throws a paid start away). A running replica
   the rule stops wanting is held until it has been unwanted for ``start_weight x cold``
   seconds, what its restart costs (ski rental; not for ``recent``, whose window is its
   hold). At most ``max(1, ceil(max_start_ratio x ready))`` replicas start at once.

**Special cases.** ``forecaster="recent"`` sets ``P_k = 1`` for ``recent_window_s`` after
concurrency ``k`` was last seen and 0 after; when the price of each replica's delay exceeds
``H + start_weight x cold`` the rule then keeps each replica exactly ``recent_window_s`` after
its last use: fixed keep-alive per replica. ``forecaster="lstm-paper"`` is the paper's
pre-warmer: ``ceil`` of the LSTM's uncalibrated upper ``paper_level`` bound of the count per
step, over the steps the look-ahead touches (trained, as the paper does, once
``lstm_min_steps`` of history exist).

Cold-start and service times are measured from the observations (each replica seen starting
is timed until the ready count rises; latency of ticks without cold starts, queueing or starts)
with ``cold_start_s`` / ``service_s`` as defaults until measured. The look-ahead plans with the
lead ``L`` among the last 32 measured starts that minimises ``L + miss_price_s x P(start >
L)`` (at the usual prices the slowest of them), so a replica started that early is ready in
time, starts slowed by other starts on a small host included.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from scheduler.forecast import ConformalCalibrator, Forecaster, make_forecaster
from scheduler.forecast.dag import DagPropagator
from scheduler.forecast.gaps import GapModel
from scheduler.forecast.mixture import ExpertMixture, group_prior, refresh_weights, resolve_many
from scheduler.forecast.phase import MIN_PERIOD_TICKS, ActivityLog, PeriodicExperts
from scheduler.forecast.pool import (
    busy_wait_miss,
    imminent_need,
    replica_need_and_load,
    replicas_worth_keeping,
)
from scheduler.policies.prewarm_config import PrewarmConfig
from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["SIZING_LEVELS", "AquatopePrewarmPolicy", "PrewarmConfig"]

_EPS = 1e-9
# levels at which the predictive distribution of a step's count is sampled (bin midpoints)
# and their probabilities (bin widths): deciles, then a finer upper tail for rare bursts
_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.995, 1.0)
SIZING_LEVELS = tuple((lo + hi) / 2 for lo, hi in itertools.pairwise(_EDGES))
_WEIGHTS = tuple(hi - lo for lo, hi in itertools.pairwise(_EDGES))
_Z = tuple(NormalDist().inv_cdf(q) for q in SIZING_LEVELS)
_MAX_COLD_S = 60.0  # cap on the lower bound a start in progress puts on the cold-start time
_COLD_SAMPLES = 32  # recent cold starts kept per function ...
_HEAVY = ("gp", "lstm")  # forecasters whose fit is expensive: refits are rationed
_FORECAST_LEVELS = (0.5, 0.9, 0.95, 0.99)
_MIN_SCORED = 120  # idle ticks the first replica's experts are scored on before they count
_TOL_UP = 1.1  # the need is reused while its inputs stay within 10 % of those it used
_GRID_STEP = math.log(1.05)  # ... on a 5 % grid, so replica_need's per-scenario memo hits
_SIG_STEPS = 96  # steps summarised to tell whether a function's traffic changed since a fit
# weight of one tick's mean service time in the running estimate, however many calls it had
# (a tick of five used to replace it: under a burst's processor sharing one tick reads 4-7x
# the next, and a busy function's replica need followed it up and down)
_SERVICE_ALPHA = 0.2
_DAG_HOPS = 4  # stages up a workflow that calls in flight are followed for the first replica


@dataclass
class _Fn:
    """Per-function state kept between ticks."""

    history: deque[float]
    calibrator: ConformalCalibrator
    gaps: GapModel = field(default_factory=GapModel)
    periodic: PeriodicExperts = field(default_factory=PeriodicExperts)
    activity: ActivityLog | None = None  # ticks with calls, for the periodic experts
    mixture: ExpertMixture | None = None  # the first replica's experts, scored as they go
    step_arrivals: float = 0.0
    step_elapsed_s: float = 0.0
    step_first_batch: float = 0.0  # calls in the step's first tick with calls
    step_active_ticks: int = 0  # ticks of the step with calls
    service_s: float | None = None
    cold_start_s: float | None = None
    cold_samples: deque[float] = field(default_factory=lambda: deque(maxlen=_COLD_SAMPLES))
    cold_upper_s: float | None = None  # the lead planned with (recomputed on each sample)
    start_times: deque[float] = field(default_factory=deque)  # replicas starting, FIFO
    prev_starting: int = 0
    prev_ready: int = 0
    waited_in_flight: int = 0  # calls in flight that may have waited (a start, a queue)
    steps_since_fit: int = 1_000_000
    last_fit_s: float | None = None  # when the GP / LSTM hyperparameters were last fitted
    fit_sig: tuple[float, float] = (0.0, 0.0)  # (mean, std) of the transformed recent window
    seen_s: list[float] = field(default_factory=list)  # level k-1: last time concurrency >= k
    wanted_s: list[float] = field(default_factory=list)  # level k-1: last time k was worth it
    fc_mean: list[float] = field(default_factory=list)
    fc_std: list[float] = field(default_factory=list)
    fc_model: str = ""
    forecaster: Forecaster | None = None
    forecaster_kind: str = ""
    paper_upper: list[float] = field(default_factory=list)  # lstm-paper: upper bound per step
    cached: dict[int, np.ndarray] = field(default_factory=dict)  # horizon -> scenario rows
    # (exact inputs, rates, (service, window), need, loads): reused while the inputs stay close
    need_cache: (
        tuple[
            tuple[Any, ...],
            tuple[float, ...],
            tuple[float, float],
            tuple[float, ...],
            tuple[float, ...],
        ]
        | None
    ) = None


class AquatopePrewarmPolicy(Policy):
    """Per-replica pre-warming from calibrated, workflow-aware demand forecasts.

    Args:
        config: the options (:class:`PrewarmConfig`); default options when omitted.
        **options: fields of :class:`PrewarmConfig` replacing those of ``config`` (the
            registry's ``--param`` names).

    Raises:
        ValueError: an unknown option or a value out of range.
    """

    name = "aquatope-prewarm"
    description = (
        "Aquatope pre-warming: calibrated GP/LSTM demand forecasts and idle-gap timers -> "
        "per-replica keep/start decisions priced against QoS misses, along workflow DAGs"
    )

    def __init__(self, config: PrewarmConfig | None = None, /, **options: Any) -> None:
        base = config if config is not None else PrewarmConfig()
        known = {f.name for f in fields(PrewarmConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"aquatope-prewarm: unknown option(s) {unknown}")
        self.config = replace(base, **options) if options else base
        self._prepared = False
        self._fns: dict[str, _Fn] = {}
        self._dag: DagPropagator | None = None
        self._dag_key: tuple[str, ...] = ()
        self._dag_state: Mapping[str, Any] = {}
        # per function: its ancestors up to _DAG_HOPS stages up, by path (see _ancestors)
        self._paths: dict[str, list[tuple[str, tuple[tuple[str, float], ...], tuple[str, ...]]]]
        self._paths = {}
        self._calls_in_flight = False  # any request in flight this tick (_imminent's shortcut)
        self._slack: dict[str, float] = {}  # per function, its workflows' least QoS slack (s)
        self._targets: tuple[tuple[str, ...], dict[str, float]] = ((), {})  # strictest QoS
        # this tick's host: (core share a start takes from the calls, the calls it slows)
        self._host: tuple[float, list[tuple[float, float, float]]] = (0.0, [])

    # -- per-function bookkeeping ----------------------------------------------------------------

    def _fn(self, name: str) -> _Fn:
        st = self._fns.get(name)
        if st is None:
            st = _Fn(
                history=deque(maxlen=self.config.history_steps),
                calibrator=ConformalCalibrator(levels=SIZING_LEVELS),
                periodic=PeriodicExperts(
                    tol_s=self.config.phase_tol_s, alpha=self.config.phase_alpha
                ),
            )
            self._fns[name] = st
        return st

    def _observe_timing(self, st: _Fn, fo: FunctionObservation, obs: Observation) -> None:
        # latency is service time when nothing waited: no cold start, no queue, and no
        # replica starting (a start takes CPU from the replicas serving) in this tick, and no
        # call still in flight from a tick that had one (a call that waited for a start
        # finishes ticks later, its latency the start's wait plus its service)
        waiting = fo.cold_starts > 0 or fo.queued > 0 or fo.replicas_starting > 0
        clean = not waiting and st.waited_in_flight == 0
        if waiting:
            st.waited_in_flight = fo.inflight
        else:  # the oldest calls finish first: count them out, never above what is in flight
            st.waited_in_flight = max(0, min(st.waited_in_flight - fo.completions, fo.inflight))
        if clean and fo.mean_service_s is not None and fo.completions > 0 and fo.mean_service_s > 0:
            if st.service_s is None:
                st.service_s = fo.mean_service_s
            else:  # one sample per tick: the calls finishing in it shared its contention
                sample = min(fo.mean_service_s, 2.0 * st.service_s)  # a slow tick cannot run away
                st.service_s += _SERVICE_ALPHA * (sample - st.service_s)
        # each replica seen starting is timed until the ready count rises (FIFO); fewer
        # starting otherwise = cancelled
        done = min(max(fo.replicas_ready - st.prev_ready, 0), len(st.start_times))
        for _ in range(done):
            sample = max(obs.now_s - st.start_times.popleft(), 0.0)
            prev = st.cold_start_s if st.cold_start_s is not None else sample
            st.cold_start_s = 0.7 * prev + 0.3 * sample
            st.cold_samples.append(sample)
            st.cold_upper_s = _lead_s(st.cold_samples, self.config.miss_price_s)
        left = st.prev_starting - done
        for _ in range(min(max(left - fo.replicas_starting, 0), len(st.start_times))):
            st.start_times.popleft()
        started = fo.replicas_starting - min(left, fo.replicas_starting)
        if started > 0:
            st.start_times.extend([obs.now_s - obs.tick_s / 2.0] * started)
        st.prev_starting = fo.replicas_starting
        st.prev_ready = fo.replicas_ready

    def _cold(self, st: _Fn, now_s: float) -> float:
        """Cold-start time to plan with: the priced lead over the recent measured starts
        (:func:`_lead_s`; at least their running mean; the default until measured), at
        least the oldest start in progress."""
        cold = st.cold_start_s if st.cold_start_s is not None else self.config.cold_start_s
        if st.cold_upper_s is not None:
            cold = max(cold, st.cold_upper_s)
        if st.start_times:  # a stuck start must not stretch the look-ahead without bound
            cold = max(cold, min(now_s - st.start_times[0], _MAX_COLD_S))
        return cold

    def _start_left_s(self, st: _Fn, now_s: float) -> float:
        """How long until a replica starting now (or the oldest start in progress) is ready,
        as planned (:meth:`_cold`)."""
        cold = self._cold(st, now_s)
        if st.start_times:
            return max(0.0, cold - (now_s - st.start_times[0]))
        return cold

    def _service(self, st: _Fn) -> float:
        return st.service_s if st.service_s is not None else self.config.service_s

    # -- forecasting -----------------------------------------------------------------------------

    def _wanted_kind(self, st: _Fn) -> str:
        cfg = self.config
        kind = cfg.forecaster
        if kind == "recent":
            return ""
        if kind == "lstm-paper":
            kind = "lstm"
        n = len(st.history)
        if n < cfg.min_history_steps or (kind == "lstm" and n < cfg.lstm_min_steps):
            return "ewma"
        return kind

    def _fit_interval_s(self, kind: str) -> float:
        steps = self.config.refit_every_steps
        if kind == "lstm":
            steps = max(steps, 360)
        return max(steps * self.config.step_s, self.config.refit_every_s)

    def _fit_due(self, st: _Fn, now_s: float) -> bool:
        """Whether a GP / LSTM fit is due: first fit, or changed data, or too old.

        A refit waits at least the refit interval and then happens only when the recent
        data moved away from those of the last fit (:func:`_moved`) or the fit is older
        than ``max_fit_age_s``: a function whose traffic has not changed keeps its
        hyperparameters and is only re-conditioned.
        """
        kind = self._wanted_kind(st)
        if kind not in _HEAVY:
            return False
        if st.last_fit_s is None:
            return True
        age = now_s - st.last_fit_s
        if age < self._fit_interval_s(kind):
            return False
        if st.forecaster_kind != kind or age >= self.config.max_fit_age_s:
            return True
        return _moved(st.fit_sig, _signature(st.history))

    def _model_for(self, st: _Fn, kind: str) -> Forecaster:
        cfg = self.config
        if st.forecaster is None or st.forecaster_kind != kind:
            opts: dict[str, Any] = {"step_s": cfg.step_s, "levels": _FORECAST_LEVELS}
            if kind in _HEAVY:
                opts["seed"] = cfg.seed
            if kind == "lstm":
                opts["epochs"] = cfg.lstm_epochs
            if kind == "seasonal":
                opts["period_steps"] = max(2, round(3600.0 / cfg.step_s))
            st.forecaster = make_forecaster(kind, **opts)
            st.forecaster_kind = kind
            st.steps_since_fit = 1_000_000
        return st.forecaster

    def _fit_gp_batch(self, names: list[str], now_s: float) -> None:
        """Fit the GPs of ``names`` together (:meth:`GPForecaster.fit_rows`)."""
        from scheduler.forecast.gp import GPForecaster

        proto = GPForecaster(
            step_s=self.config.step_s, levels=_FORECAST_LEVELS, seed=self.config.seed
        )
        rows = [np.asarray(self._fns[n].history, dtype=np.float64) for n in names]
        try:
            fitted = proto.fit_rows(rows)
        except (ValueError, RuntimeError):  # numerical trouble: EWMA until the next interval
            for name in names:
                self._fns[name].last_fit_s = now_s
            return
        for name, model in zip(names, fitted, strict=True):
            st = self._fns[name]
            st.forecaster, st.forecaster_kind = model, "gp"
            st.last_fit_s, st.steps_since_fit = now_s, 0
            st.fit_sig = _signature(st.history)

    def _refresh_forecast(self, st: _Fn, now_s: float, horizon: int, may_fit: bool) -> None:
        kind = self._wanted_kind(st)
        if not kind:
            return
        history = np.asarray(st.history, dtype=np.float64)[None, :]
        if kind in _HEAVY and st.forecaster_kind != kind and not may_fit:
            kind = "ewma"  # no fit slot this tick: keep the cheap model until its turn
        fresh = st.forecaster is None or st.forecaster_kind != kind
        model = self._model_for(st, kind)
        try:
            if kind in _HEAVY:
                fit = fresh or (may_fit and self._fit_due(st, now_s))
            else:
                fit = st.steps_since_fit >= self.config.refit_every_steps
            if fit:
                model.fit(history, end_s=now_s)
                st.steps_since_fit = 0
                if kind in _HEAVY:
                    st.last_fit_s = now_s
                    st.fit_sig = _signature(st.history)
            else:
                model.update(history, end_s=now_s)
            fc = model.predict(horizon)
        except (ValueError, RuntimeError):  # numerical trouble in a model fit: fall back
            model = make_forecaster("ewma", step_s=self.config.step_s, levels=_FORECAST_LEVELS)
            model.fit(history)
            fc = model.predict(horizon)
            st.forecaster, st.forecaster_kind, kind = None, "", "ewma"
            st.last_fit_s = now_s  # do not retry the failing fit before the next interval
        st.steps_since_fit += 1
        st.fc_mean = [float(v) for v in fc.mean[0]]
        st.fc_std = [float(v) for v in fc.std[0]]
        st.fc_model = kind
        if self.config.forecaster == "lstm-paper":
            if kind == "lstm":
                st.paper_upper = [float(v) for v in fc.quantile(self.config.paper_level)[0]]
            else:  # before the LSTM trains: the same upper bound from the fallback's spread
                z = NormalDist().inv_cdf(self.config.paper_level)
                st.paper_upper = [m + z * s for m, s in zip(st.fc_mean, st.fc_std, strict=True)]

    def _scenarios(self, st: _Fn, horizon: int) -> np.ndarray:
        """Calibrated count quantiles at :data:`SIZING_LEVELS`: ``13 x horizon`` (cached per
        horizon until the step closes)."""
        rows = st.cached.get(horizon)
        if rows is not None:
            return rows
        rows = np.zeros((len(SIZING_LEVELS), horizon))
        if st.fc_mean:
            mean = np.asarray(st.fc_mean, dtype=np.float64)
            std = np.asarray(st.fc_std, dtype=np.float64)
            idx = np.minimum(np.arange(horizon), mean.size - 1)
            if self.config.calibrate and st.calibrator.n_scores >= st.calibrator.min_scores:
                rows = st.calibrator.upper_many(mean[idx], std[idx], SIZING_LEVELS)
            else:
                z = np.asarray(_Z)[:, None]
                # the forecast's own spread (no floor: a function never called has none)
                rows = np.maximum(mean[idx][None, :] + z * std[idx][None, :], 0.0)
        st.cached[horizon] = rows
        return rows

    def _ensure_dag(self, obs: Observation) -> DagPropagator | None:
        if not self.config.dag or not obs.workflows:
            return None
        key = tuple(sorted(obs.workflows))
        if self._dag is None or key != self._dag_key:
            state = self._dag.state_dict() if self._dag is not None else self._dag_state
            self._dag = DagPropagator(obs.workflows, decay=0.98)
            self._paths = {}
            self._dag.load_state_dict(state)
            self._dag_key = key
        return self._dag

    # -- the decision ----------------------------------------------------------------------------

    def decide(self, observation: Observation) -> Decision:
        """Target warm replicas per function for this tick (see the module docstring)."""
        obs = observation
        cfg = self.config
        if not self._prepared:
            self._prepare()
        dag = self._ensure_dag(obs)
        closed: dict[str, float] = {}
        for name, fo in obs.functions.items():
            st = self._fn(name)
            self._observe_timing(st, fo, obs)
            self._observe_use(st, fo, obs)
            if fo.arrivals > 0:
                if st.step_active_ticks == 0:
                    st.step_first_batch = fo.arrivals
                st.step_active_ticks += 1
            st.step_arrivals += fo.arrivals
            st.step_elapsed_s += obs.tick_s  # the time this observation covers
            if st.step_elapsed_s + _EPS >= cfg.step_s:
                count = st.step_arrivals
                if cfg.calibrate and st.fc_mean:
                    st.calibrator.update(mean=st.fc_mean[0], std=st.fc_std[0], observed=count)
                st.history.append(count)
                st.cached.clear()
                closed[name] = count
                st.step_arrivals = 0.0
                # what ran past the step's end counts towards the next (at most a step): a
                # live tick lands a few ms early or late, and dropping the excess made half
                # the steps a tick longer (10.5 s for 10) than the simulator's
                over = st.step_elapsed_s - cfg.step_s
                st.step_elapsed_s = min(over, cfg.step_s) if over > _EPS else 0.0
                st.step_first_batch = 0.0
                st.step_active_ticks = 0
        # the first replica's experts scored on the windows that ended, every function at once
        scoring = []
        for name in obs.functions:
            st = self._fns[name]
            if st.mixture is not None and st.activity is not None:
                scoring.append((st.mixture, st.activity.any_active))
        resolve_many(scoring, obs.now_s)
        latency = {n: self._service(self._fns[n]) / cfg.step_s for n in obs.functions}
        if dag is not None and closed:
            dag.observe_step(closed, latency_steps=latency)

        # look-ahead per function: the rest of this step, a cold start and the next tick
        cold = {n: self._cold(self._fns[n], obs.now_s) for n in obs.functions}
        need_steps: dict[str, int] = {}
        for name in obs.functions:
            rest = cfg.step_s - self._fns[name].step_elapsed_s
            extra = max(0.0, cold[name] + obs.tick_s - rest)
            need_steps[name] = 1 + math.ceil(extra / cfg.step_s - _EPS)
        horizon = max(need_steps.values(), default=1)
        due = [n for n in closed if self._fit_due(self._fns[n], obs.now_s)]
        due.sort(key=lambda n: (self._fns[n].last_fit_s is not None, self._fns[n].last_fit_s or 0))
        gp_due = [n for n in due if self._wanted_kind(self._fns[n]) == "gp"]
        if gp_due:  # every GP due is fitted in one batched call (about the cost of one)
            self._fit_gp_batch(gp_due, obs.now_s)
        fit_now = set([n for n in due if n not in gp_due][: cfg.max_fits_per_tick])
        for name in closed:
            self._refresh_forecast(self._fns[name], obs.now_s, max(horizon, 2), name in fit_now)

        counts: dict[str, Any] = {}
        if cfg.forecaster not in ("recent", "lstm-paper"):
            for name in obs.functions:
                counts[name] = self._own_counts(self._fns[name], horizon)
            if dag is not None:
                counts = dag.propagate(counts, shift_steps=latency)

        out: dict[str, FunctionDecision] = {}
        self._slack = self._workflow_slack(obs) if cfg.busy_wait == "queue" else {}
        self._host = self._host_load(obs)
        self._calls_in_flight = any(fo.inflight > 0 for fo in obs.functions.values())
        forecasts: dict[str, tuple[list[float], list[float]]] = {}
        experts: list[tuple[str, float, np.ndarray]] = []
        if cfg.forecaster not in ("recent", "lstm-paper"):
            for name, fo in obs.functions.items():
                fc = self._forecast_need(name, fo, obs, cold[name], need_steps[name], counts)
                forecasts[name] = fc
                if (cfg.gaps or cfg.phase) and fo.inflight == 0:
                    p_fc = fc[0][0] if fc[0] else 0.0
                    horizon_s = cold[name] + 2.0 * obs.tick_s  # a start, and the next tick
                    vector = self._expert_probs(self._fns[name], obs, horizon_s, p_fc)
                    experts.append((name, p_fc, vector))
        first = self._first_replicas(experts)
        for name, fo in obs.functions.items():
            out[name] = self._decide_one(
                name,
                fo,
                obs,
                cold[name],
                need_steps[name],
                forecasts.get(name, ([], [])),
                first.get(name),
                dag,
            )
        return Decision(functions=out)

    def _observe_use(self, st: _Fn, fo: FunctionObservation, obs: Observation) -> None:
        """Idle gaps (first replica) and when each replica was last needed (``recent``)."""
        active = fo.arrivals > 0 or fo.inflight > 0
        if self.config.gaps or self.config.phase:
            gap = st.gaps.observe(obs.now_s, active=active, tick_s=obs.tick_s)
            if self.config.phase and gap is not None and gap > MIN_PERIOD_TICKS * obs.tick_s:
                # a gap that may be a period: the most frequent ones are read again (the
                # back-to-back ticks of a busy function are none)
                st.periodic.learn_periods(st.gaps.gaps, tick_s=obs.tick_s)
            self._activity(st).observe(obs.now_s, active=active, tick_s=obs.tick_s)
        if self.config.forecaster == "recent" and active:
            per = max(fo.max_inflight, 1)
            spread = math.ceil(fo.arrivals * self._service(st) / obs.tick_s - _EPS)
            used = math.ceil(max(fo.inflight, min(fo.arrivals, spread), 1) / per)
            while len(st.seen_s) < used:
                st.seen_s.append(obs.now_s)
            for k in range(used):
                st.seen_s[k] = obs.now_s

    def _own_counts(self, st: _Fn, horizon: int) -> np.ndarray:
        """This function's count scenarios per step, floored by the rate seen in this step.

        The step's first batch (the calls of its first tick with calls) is not a rate: a
        timer firing many calls at once says nothing about the next seconds. The rate is
        the calls after it over the step's elapsed time, once a second tick saw calls."""
        rows = self._scenarios(st, horizon)
        if self._rate_seen(st):
            seen = (st.step_arrivals - st.step_first_batch) / st.step_elapsed_s
            rows = np.maximum(rows, seen * self.config.step_s)
        return rows

    def _rate_seen(self, st: _Fn) -> bool:
        """Whether this step's calls so far are a rate (``reactive``): calls in two ticks."""
        return self.config.reactive and st.step_elapsed_s > 0 and st.step_active_ticks > 1

    def _target(self, name: str, obs: Observation) -> float | None:
        """The strictest QoS target of the function's workflows (None: in none)."""
        key = tuple(sorted(obs.workflows))
        if self._targets[0] != key:
            strictest: dict[str, float] = {}
            for wf in obs.workflows.values():
                for fn in wf.functions:
                    strictest[fn] = min(strictest.get(fn, math.inf), wf.qos.target_s)
            self._targets = (key, strictest)
        return self._targets[1].get(name)

    def _blocked_cost(self, name: str, obs: Observation, delay_s: float) -> float:
        """Price of an arrival delayed ``delay_s`` (idle replica-seconds): the whole
        ``miss_price_s`` when the delay alone breaks the strictest QoS target of the
        function's workflows, its share of the target otherwise."""
        target = self._target(name, obs)
        share = 1.0
        if target is not None and delay_s < target:
            share = delay_s / target
        return self.config.miss_price_s * share

    def _busy_costs(
        self,
        name: str,
        fo: FunctionObservation,
        obs: Observation,
        cold_s: float,
        loads: list[float],
        replicas: int,
    ) -> float | list[float]:
        """Price of an arrival that finds replicas ``1..k-1`` busy, for ``k = 2..replicas``.

        ``busy_wait="share"``: it waits about a service time (or a start, if quicker), priced
        by its share of the strictest target, as a cold start is. ``"queue"``, in a workflow:
        it waits for one of them (M/M/c at the offered load where replica ``k`` is needed,
        ``loads[k-1]``; :func:`~scheduler.forecast.pool.busy_wait_miss`) and misses its QoS
        target only when the wait outlasts the workflow's slack (target minus the critical
        path of the measured service times)."""
        service = self._service(self._fns[name])
        slack = self._slack.get(name)
        if self.config.busy_wait == "share" or slack is None:
            return self._blocked_cost(name, obs, min(cold_s, service))
        per = max(fo.max_inflight, 1)
        price = self.config.miss_price_s
        costs = []
        for k in range(2, replicas + 1):
            load = loads[min(k - 1, len(loads) - 1)] if loads else 0.0
            miss = busy_wait_miss(slack, service, replicas=k - 1, load=load, per_replica=per)
            costs.append(price * miss)
        return costs

    def _host_load(self, obs: Observation) -> tuple[float, list[tuple[float, float, float]]]:
        """What one more start would take from the calls on the host this tick.

        The host's ``host_cores`` are shared by the calls running (each ``min(1, CPU
        limit)`` core) and the replicas starting (a core each); once that demand exceeds
        the cores, every job gets ``cores / demand`` of its speed. Returns the share of a
        core a start takes from the calls, ``clip(demand + 1 - cores, 0, 1)`` (0 on an idle
        host, and with no ``host_cores``), and per function with QoS-bound calls
        ``(CPU-seconds of a call, price of a second of delay x calls running, same x calls
        per second)`` for :meth:`_contention_cost`."""
        cfg = self.config
        if not cfg.contention or cfg.host_cores is None:
            return 0.0, []
        cores_used: dict[str, tuple[float, float]] = {}  # name -> (calls running, core each)
        for name, fo in obs.functions.items():
            cpu = fo.limits.cpu_cores
            cores_used[name] = (self._busy(name, fo, obs), 1.0 if cpu is None else min(1.0, cpu))
        demand = float(sum(fo.replicas_starting for fo in obs.functions.values()))
        demand += sum(running * core for running, core in cores_used.values())
        taken = min(1.0, max(0.0, demand + 1.0 - cfg.host_cores))
        if taken <= 0.0:
            return 0.0, []
        calls: list[tuple[float, float, float]] = []
        for name, (running, core) in cores_used.items():
            target = self._target(name, obs)
            if running <= 0.0 or target is None:  # outside any workflow: no QoS to miss
                continue
            per_s = cfg.miss_price_s / target  # a second's delay, priced as a cold start's
            work = self._service(self._fns[name]) * core
            arriving = obs.functions[name].arrivals / obs.tick_s
            calls.append((work, per_s * running, per_s * arriving))
        return taken, calls

    def _busy(self, name: str, fo: FunctionObservation, obs: Observation) -> float:
        """Calls of the function running on the host: those in flight at the tick's end, or
        its offered load (calls per second x service time) when more: calls far shorter
        than a tick come and go between two looks."""
        running = float(max(fo.inflight - fo.queued, 0))
        st = self._fns.get(name)
        if st is None or fo.arrivals == 0:
            return running
        return max(running, fo.arrivals / obs.tick_s * self._service(st))

    def _contention_cost(self, st: _Fn, cold_s: float) -> float:
        """What a start of this function costs the calls it shares a saturated host with
        (idle replica-seconds).

        Under processor sharing a job of ``W`` CPU-seconds delays each job beside it by
        ``min(w, W) / cores`` (``w`` that job's CPU-seconds); the start's ``W`` is its
        fastest measured start (the least slowed), and the calls beside it are those running
        now (:meth:`_busy`) and those arriving at this tick's rate while it starts
        (``cold_s``). Each second of delay is priced as a cold start's, ``miss_price_s /
        target``."""
        taken, calls = self._host
        if taken <= 0.0 or not calls or self.config.host_cores is None:
            return 0.0
        work = min(st.cold_samples) if st.cold_samples else self.config.cold_start_s
        delay = sum((now + rate * cold_s) * min(w, work) for w, now, rate in calls)
        return taken * delay / self.config.host_cores

    def _workflow_slack(self, obs: Observation) -> dict[str, float]:
        """Per function, the least slack of its workflows: QoS target minus the critical
        path of the measured service times."""
        service = {n: self._service(self._fns[n]) for n in obs.functions if n in self._fns}
        slack: dict[str, float] = {}
        for wf in obs.workflows.values():
            path = wf.critical_path_s(service)
            if path is None:
                continue
            for fn in wf.functions:
                slack[fn] = min(slack.get(fn, math.inf), wf.qos.target_s - path)
        return slack

    def _forecast_need(
        self,
        name: str,
        fo: FunctionObservation,
        obs: Observation,
        cold_s: float,
        steps: int,
        counts: Mapping[str, Any],
    ) -> tuple[list[float], list[float]]:
        """``P(replica k needed within the look-ahead)`` and the offered load where it is,
        from the count scenarios alone (:func:`~scheduler.forecast.pool.replica_need_and_load`;
        reused while its inputs stay within 10 % of those it used)."""
        cfg = self.config
        st = self._fns[name]
        window_s = cold_s + obs.tick_s
        per = max(fo.max_inflight, 1)
        rows = counts.get(name)
        raw: tuple[float, ...] = ()
        if rows is not None:
            raw = tuple((rows[:, :steps].max(axis=1) / cfg.step_s).tolist())
        # probabilities below idle / blocked cost decide nothing: stop there (one more kept
        # so the rule sees where it fails)
        floor = round(0.5 * window_s / max(self._blocked_cost(name, obs, cold_s), _EPS), 4)
        service_s = self._service(st)
        exact = (per, fo.max_replicas, floor, len(raw))
        cached = st.need_cache
        if (
            cached is not None
            and cached[0] == exact
            and (raw == cached[1] or _within(raw, cached[1]))
            and _within((service_s, window_s), cached[2])
        ):
            need, loads = list(cached[3]), list(cached[4])  # inputs within 10 % of those used
        else:
            # inputs rounded up to a 5 % grid, so the per-scenario memo in replica_need hits
            need, loads = (
                replica_need_and_load(
                    [_grid_up(r) for r in raw],
                    _WEIGHTS,
                    _grid_up(service_s),
                    horizon_s=_grid_up(window_s),
                    max_inflight=per,
                    max_replicas=fo.max_replicas,
                    floor=min(floor, 1e-3),
                )
                if any(raw)
                else ([], [])
            )
            st.need_cache = (exact, raw, (service_s, window_s), tuple(need), tuple(loads))
        return need, loads

    def _need(
        self,
        name: str,
        fo: FunctionObservation,
        obs: Observation,
        cold_s: float,
        forecast: tuple[list[float], list[float]],
        first: float | None,
        dag: DagPropagator | None,
    ) -> tuple[list[float], list[float]]:
        """``P(replica k needed within the look-ahead)``, k = 1, 2, ...; and the offered load
        (Erlangs) where replica ``k`` is needed: the forecast scenarios' (``forecast``, from
        :meth:`_forecast_need`), the first replica's from the experts' mixture (``first``,
        for an idle function: :meth:`_first_replicas`), plus the concurrency that calls
        running upstream bring."""
        cfg = self.config
        st = self._fns[name]
        window_s = cold_s + obs.tick_s
        per = max(fo.max_inflight, 1)
        if cfg.forecaster == "recent":
            return [1.0 if obs.now_s - t < cfg.recent_window_s else 0.0 for t in st.seen_s], []
        need, loads = forecast
        if first is not None:
            # the mixture is the first replica's need; later ones cannot be likelier (while
            # a call is in flight the first replica is needed anyway: nothing to predict)
            p_fc = need[0] if need else 0.0
            p1 = first
            if self._demand_seen_now(name, dag):
                p1 = max(p1, p_fc)  # this step's calls are evidence no expert has seen
            need = [p1] + [min(p, p1) for p in need[1:]]
            if not need[0]:
                need = []
        arriving, concurrent = self._imminent(name, obs, dag, window_s)
        if concurrent or arriving:
            soon = imminent_need(concurrent, max_inflight=per, max_replicas=fo.max_replicas)
            # the first replica is needed when any call comes within the look-ahead, however
            # briefly it runs: behind a long upstream call that is likelier than overlapping
            landing = imminent_need(arriving, max_inflight=1, max_replicas=1)
            if landing:
                soon = [max(landing[0], soon[0] if soon else 0.0), *soon[1:]]
            need = [max(a, b) for a, b in itertools.zip_longest(need, soon, fillvalue=0.0)]
        brought = sum(n * c for n, c in concurrent)
        return need, ([a + brought for a in loads] if loads else [brought])

    def _demand_seen_now(self, name: str, dag: DagPropagator | None) -> bool:
        """Whether calls in the current step (the function's own or an upstream's, in two
        ticks or more) already raised its forecast: the reactive floor and DAG propagation.
        One batch at one instant (a timer's firing) is not a rate; the calls an upstream's
        batch brings here are priced while they run (:meth:`_imminent`)."""
        if self._rate_seen(self._fns[name]):
            return True
        if dag is None:
            return False
        return any(up in self._fns and self._rate_seen(self._fns[up]) for up in dag.upstream(name))

    def _activity(self, st: _Fn) -> ActivityLog:
        if st.activity is None:
            st.activity = ActivityLog(span_s=st.periodic.history_s)
        return st.activity

    def _new_mixture(self, st: _Fn) -> ExpertMixture:
        """The first replica's experts, with a prior even over the forecast, the idle-gap
        hazard, the base rate and the periodic family."""
        names, groups = ["forecast"], {"forecast": 1}
        if self.config.gaps:
            names.append("gaps")
            groups["gaps"] = 1
        if self.config.phase:
            periodic = st.periodic.names
            names.extend(periodic)
            groups["base"] = 1
            groups["periodic"] = len(periodic) - 1
        return ExpertMixture(names, prior=group_prior(groups))

    def _expert_probs(self, st: _Fn, obs: Observation, horizon_s: float, p_fc: float) -> np.ndarray:
        """Each first-replica expert's ``P(a call within horizon_s)``: the rate forecast's,
        the idle-gap hazard's and the periodic experts' (recorded in the function's mixture,
        to be scored when the window has passed)."""
        probs = [p_fc]
        base = p_fc
        periodic: np.ndarray | None = None
        if self.config.phase:
            periodic, _ = st.periodic.predict(
                self._activity(st), now_s=obs.now_s, horizon_s=horizon_s
            )
            base = float(periodic[0])
        if self.config.gaps:
            hazard = st.gaps.probability(now_s=obs.now_s, horizon_s=horizon_s)
            probs.append(hazard[0] if hazard is not None else base)
        if periodic is not None:
            probs.extend(periodic.tolist())
        if st.mixture is None:
            st.mixture = self._new_mixture(st)
        vector = np.asarray(probs)
        st.mixture.record(obs.now_s, obs.now_s + horizon_s, vector, tick_s=obs.tick_s)
        return vector

    def _first_replicas(self, experts: list[tuple[str, float, np.ndarray]]) -> dict[str, float]:
        """``P(a call within the look-ahead)`` per idle function ``(name, P from the rate
        forecast, every expert's P)``: the mixture of the experts, each weighted by how
        well it has predicted this function's calls so far
        (:class:`~scheduler.forecast.mixture.ExpertMixture`; the weights of all functions
        computed together); the rate forecast's alone until :data:`_MIN_SCORED` windows
        are scored."""
        mixtures = {name: self._fns[name].mixture for name, _, _ in experts}
        refresh_weights(m for m in mixtures.values() if m is not None and m.scored >= _MIN_SCORED)
        out: dict[str, float] = {}
        for name, p_fc, vector in experts:
            mixture = mixtures[name]
            if mixture is None or mixture.scored < _MIN_SCORED:  # not tried yet
                out[name] = p_fc
            else:
                out[name] = mixture.predict(vector)
        return out

    def _imminent(
        self, name: str, obs: Observation, dag: DagPropagator | None, window_s: float
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Calls running upstream, as ``(running calls, expected calls each)`` per source.

        Arriving: the calls each running call of an ancestor (up to :data:`_DAG_HOPS` stages
        up) brings here within the look-ahead ``window_s``: the path's edge weights x learned
        gains x ``clip((window_s - D) / S_a, 0, 1)``, the chance that the call finishes early
        enough for the stages between (``D``, their service times) to be done within it; a
        call queued at the ancestor first waits for its replica's start (``D`` grows by what
        is left of it).
        Concurrent: the concurrency each running call of a direct upstream brings (edge
        weight x gain x ``min(1, S_d / S_u)``, the overlap of the service times).
        :func:`imminent_need` prices both."""
        if dag is None or not self._calls_in_flight:
            return [], []
        mine = self._service(self._fns[name])
        arriving: list[tuple[int, float]] = []
        concurrent: list[tuple[int, float]] = []
        for up, edges, between in self._ancestors(name, dag):
            fo_up = obs.functions.get(up)
            if fo_up is None or fo_up.inflight <= 0 or up not in self._fns:
                continue
            between_s = sum(self._service(self._fns[n]) for n in between if n in self._fns)
            if between_s >= window_s:  # its calls reach here after the look-ahead
                continue
            path = math.prod(w * dag.gain(node) for node, w in edges)
            theirs = max(self._service(self._fns[up]), 1e-6)
            running = max(fo_up.inflight - fo_up.queued, 0)
            if running:
                soon = min(1.0, max(0.0, window_s - between_s) / theirs)
                arriving.append((running, path * soon))
                if len(edges) == 1:
                    concurrent.append((running, path * min(1.0, mine / theirs)))
            if fo_up.queued > 0:  # they run once a replica is free (or started)
                wait_s = self._start_left_s(self._fns[up], obs.now_s)
                soon = min(1.0, max(0.0, window_s - between_s - wait_s) / theirs)
                arriving.append((int(fo_up.queued), path * soon))
        return arriving, concurrent

    def _ancestors(
        self, name: str, dag: DagPropagator
    ) -> list[tuple[str, tuple[tuple[str, float], ...], tuple[str, ...]]]:
        """Every path from an ancestor up to :data:`_DAG_HOPS` stages up down to ``name``:
        ``(ancestor, ((node, edge weight into it), ...) from name up, stages between)``,
        nearest first (cached until the workflows change)."""
        paths = self._paths.get(name)
        if paths is None:
            paths = []
            frontier: list[tuple[str, tuple[tuple[str, float], ...], tuple[str, ...]]]
            frontier = [(name, (), ())]
            for _hop in range(_DAG_HOPS):
                reached = []
                for node, edges, between in frontier:
                    for up, w in dag.upstream(node).items():
                        reached.append((up, (*edges, (node, w)), between))
                paths.extend(reached)
                frontier = [(up, edges, (*between, up)) for up, edges, between in reached]
            self._paths[name] = paths
        return paths

    def _decide_one(
        self,
        name: str,
        fo: FunctionObservation,
        obs: Observation,
        cold_s: float,
        steps: int,
        forecast: tuple[list[float], list[float]],
        first: float | None,
        dag: DagPropagator | None,
    ) -> FunctionDecision:
        cfg = self.config
        st = self._fns[name]
        per = max(fo.max_inflight, 1)
        current = fo.replicas_ready + fo.replicas_starting
        window_s = cold_s + obs.tick_s
        blocked = self._blocked_cost(name, obs, cold_s)
        contention = 0.0
        if cfg.forecaster == "lstm-paper":
            upper = st.paper_upper[:steps] if st.paper_upper else [0.0]
            wanted = max(0, math.ceil(max(upper) - _EPS))
            need: list[float] = []
        else:
            need, loads = self._need(name, fo, obs, cold_s, forecast, first, dag)
            contention = self._contention_cost(st, cold_s)
            wanted = replicas_worth_keeping(
                need,
                blocked_cost=blocked,
                busy_cost=self._busy_costs(name, fo, obs, cold_s, loads, len(need)),
                idle_cost=window_s,
                current=current,
                start_cost=cfg.start_weight * cold_s,
                contention_cost=contention,
            )
            if cfg.forecaster != "recent":  # (fixed keep-alive: its window is the hold)
                wanted = self._hold(st, wanted, current, obs.now_s, cfg.start_weight * cold_s)
        running = max(fo.inflight - fo.queued, 0)
        replicas = max(wanted, math.ceil(running / per))
        replicas = self._limit_starts(replicas, fo)
        if fo.queued > 0 or fo.replicas_starting > 0:
            # a start under way is paid for (the platform started it for the queue, or this
            # policy did a tick ago), and a scale-down cancels starting replicas first: never
            # cancel one. Cancelled and restarted each time the need flickers across the
            # price, a replica never comes up and its start's CPU is spent again and again
            replicas = max(replicas, current)
        replicas = min(max(replicas, fo.min_replicas), fo.max_replicas)
        p1 = need[0] if need else 0.0
        return FunctionDecision(
            replicas=replicas,
            reason=(
                f"{st.fc_model or cfg.forecaster} P1={p1:.3f} blocked={blocked:.0f}s "
                f"H={window_s:.2f}s service={self._service(st):.3f}s cold={cold_s:.2f}s "
                f"wanted={wanted}" + (f" contention={contention:.0f}s" if contention else "")
            ),
        )

    @staticmethod
    def _hold(st: _Fn, wanted: int, current: int, now_s: float, hold_s: float) -> int:
        """Keep a running replica until it has been unwanted for as long as its restart
        would cost (``hold_s`` idle replica-seconds: the start price), the ski-rental rule.

        The price rule looks one start ahead, and its inputs move from tick to tick: on a
        busy function the last replica's worth crosses its idle cost back and forth every
        few seconds. Stopping it each time and starting it again pays a start per crossing
        (and on a shared host the start's CPU slows the calls being served); holding it
        until the idle time saved would have paid for the restart costs at most twice the
        best choice in hindsight. Only replicas already running or starting are held, and
        only while the first is wanted: the first replica's need comes from the experts that
        time a sparse function's calls (a timer's next firing a minute away lets it go at
        once); the later ones' from the load forecast, whose noise is what flickers."""
        st.wanted_s[:wanted] = [now_s] * wanted
        if wanted == 0:
            return 0
        held = 0
        while held < len(st.wanted_s) and now_s - st.wanted_s[held] < hold_s - _EPS:
            held += 1
        del st.wanted_s[max(held, wanted) :]
        return max(wanted, min(held, current))

    def _limit_starts(self, target: int, fo: FunctionObservation) -> int:
        """Cap the replicas starting at once to ``max(1, ceil(ratio x ready))``."""
        current = fo.replicas_ready + fo.replicas_starting
        ratio = self.config.max_start_ratio
        if ratio <= 0 or target <= current:
            return target
        allowed = max(1, math.ceil(ratio * fo.replicas_ready))
        return min(target, fo.replicas_ready + max(allowed, fo.replicas_starting))

    def _prepare(self) -> None:
        """Load and warm the model library on the first tick, not in the middle of a burst."""
        self._prepared = True
        if self.config.forecaster == "gp":
            from scheduler.forecast.gp import GPForecaster

            # the first fit in a process imports torch and scipy (seconds): pay it now
            warm = GPForecaster(step_s=self.config.step_s, fit_iters=2, seed=self.config.seed)
            warm.fit(np.ones((1, 8)))
            warm.predict(1)
        elif self.config.forecaster in ("lstm", "lstm-paper"):
            import torch  # noqa: F401

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (model weights are not kept: models refit after a load)."""
        return {
            "functions": {
                name: {
                    "history": list(st.history),
                    "step_arrivals": st.step_arrivals,
                    "step_elapsed_s": st.step_elapsed_s,
                    "step_first_batch": st.step_first_batch,
                    "step_active_ticks": st.step_active_ticks,
                    "service_s": st.service_s,
                    "cold_start_s": st.cold_start_s,
                    "cold_samples": list(st.cold_samples),
                    "start_times": list(st.start_times),
                    "prev_starting": st.prev_starting,
                    "waited_in_flight": st.waited_in_flight,
                    "prev_ready": st.prev_ready,
                    "seen_s": list(st.seen_s),
                    "wanted_s": list(st.wanted_s),
                    "fc_mean": list(st.fc_mean),
                    "fc_std": list(st.fc_std),
                    "fc_model": st.fc_model,
                    "paper_upper": list(st.paper_upper),
                    "calibrator": st.calibrator.state_dict(),
                    "gaps": st.gaps.state_dict(),
                    "periodic": st.periodic.state_dict(),
                    "activity": st.activity.state_dict() if st.activity is not None else None,
                    "mixture": st.mixture.state_dict() if st.mixture is not None else None,
                }
                for name, st in self._fns.items()
            },
            "dag": self._dag.state_dict() if self._dag is not None else dict(self._dag_state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self._fns = {}
        for name, raw in state.get("functions", {}).items():
            st = self._fn(name)
            st.history.extend(float(v) for v in raw["history"])
            st.step_arrivals = float(raw["step_arrivals"])
            st.step_elapsed_s = float(raw["step_elapsed_s"])
            # (states written before these existed: the step's calls as one batch)
            st.step_first_batch = float(raw.get("step_first_batch", st.step_arrivals))
            st.step_active_ticks = int(raw.get("step_active_ticks", st.step_arrivals > 0))
            st.service_s = None if raw["service_s"] is None else float(raw["service_s"])
            st.cold_start_s = None if raw["cold_start_s"] is None else float(raw["cold_start_s"])
            st.cold_samples.extend(float(v) for v in raw.get("cold_samples", []))
            if st.cold_samples:
                st.cold_upper_s = _lead_s(st.cold_samples, self.config.miss_price_s)
            st.start_times.extend(float(v) for v in raw.get("start_times", []))
            st.prev_starting = int(raw.get("prev_starting", 0))
            st.waited_in_flight = int(raw.get("waited_in_flight", 0))
            st.prev_ready = int(raw.get("prev_ready", 0))
            st.seen_s = [float(v) for v in raw.get("seen_s", [])]
            st.wanted_s = [float(v) for v in raw.get("wanted_s", [])]
            st.fc_mean = [float(v) for v in raw["fc_mean"]]
            st.fc_std = [float(v) for v in raw["fc_std"]]
            st.fc_model = str(raw.get("fc_model", ""))
            st.paper_upper = [float(v) for v in raw.get("paper_upper", [])]
            st.calibrator.load_state_dict(raw["calibrator"])
            st.gaps.load_state_dict(raw.get("gaps", {}))
            st.periodic.load_state_dict(raw.get("periodic") or {})
            if raw.get("activity") is not None:
                self._activity(st).load_state_dict(raw["activity"])
            if raw.get("mixture") is not None:
                st.mixture = self._new_mixture(st)
                st.mixture.load_state_dict(raw["mixture"])
        self._dag_state = dict(state.get("dag", {}))
        self._dag = None
        self._dag_key = ()


def _lead_s(samples: deque[float], miss_price_s: float) -> float:
    """The cold-start time the look-ahead plans with, priced like everything else: the lead
    ``L`` among the recent starts that minimises ``L + miss_price_s x P(start > L)`` (a
    second of lead costs a second of idle replica; a start that outlasts it costs a miss).
    At the usual prices that is the slowest recent start; near-zero prices plan with less."""
    ordered = np.sort(np.fromiter(samples, float))
    later = (ordered.size - np.searchsorted(ordered, ordered, side="right")) / ordered.size
    return float(ordered[int(np.argmin(ordered + miss_price_s * later))])


def _grid_up(value: float) -> float:
    """``value`` rounded up to a 5 % logarithmic grid (zero stays zero)."""
    if value <= 0.0:
        return 0.0
    return math.exp(math.ceil(math.log(value) / _GRID_STEP - 1e-12) * _GRID_STEP)


def _within(values: tuple[float, ...], base: tuple[float, ...]) -> bool:
    """Whether each value is within 10 % of its base (zero only matches zero)."""
    slack = _TOL_UP - 1.0
    return all(abs(v - b) <= slack * b + 1e-12 for v, b in zip(values, base, strict=True))


def _signature(history: deque[float]) -> tuple[float, float]:
    """Mean and spread of the variance-stabilised last :data:`_SIG_STEPS` counts."""
    tail = list(itertools.islice(history, max(len(history) - _SIG_STEPS, 0), None))
    if not tail:
        return (0.0, 0.0)
    z = 2.0 * np.sqrt(np.asarray(tail, dtype=np.float64) + 0.375)
    return (float(z.mean()), float(z.std()))


def _moved(old: tuple[float, float], new: tuple[float, float]) -> bool:
    """Whether the data moved enough since a fit to refit (level or spread).

    In the variance-stabilised scale Poisson noise has unit spread: a level shift of more
    than half a unit, or a spread changed by more than half or double, is a new regime.
    """
    level = abs(new[0] - old[0]) > 0.5 * max(old[1], 1.0)
    spread = not 0.5 <= (new[1] + 0.1) / (old[1] + 0.1) <= 2.0
    return level or spread


def _registry_signature() -> inspect.Signature:
    """``__init__`` as the registry reads it: one keyword-only parameter per config field."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in fields(PrewarmConfig):
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
            )
        )
    return inspect.Signature(params)


def config_annotations() -> dict[str, Any]:
    """Field name -> annotation (strings) of :class:`PrewarmConfig`, for registry signatures."""
    return {f.name: f.type for f in fields(PrewarmConfig)}


AquatopePrewarmPolicy.__init__.__signature__ = _registry_signature()  # type: ignore[attr-defined]
AquatopePrewarmPolicy.__init__.__annotations__ = {**config_annotations(), "return": "None"}
register_policy("aquatope-prewarm")(AquatopePrewarmPolicy)
