"""Policy ``aquatope-prewarm``: calibrated Bayesian demand forecasts -> warm replicas.

Each tick (pure; time comes in ``Observation.now_s``):

1. **History.** Per function, arrivals of the ticks are summed into steps of ``step_s`` seconds
   and kept in a ring buffer of ``history_steps`` steps (the forecasters' input layout).
2. **Forecast** at each step boundary: the chosen forecaster (``gp`` by default) conditions on
   the history (hyperparameters refitted every ``refit_every_steps``), or an EWMA while fewer
   than ``min_history_steps`` steps exist (works from a minute or two, improves with more).
3. **Calibrate**: a per-function :class:`~scheduler.forecast.calibrate.ConformalCalibrator`
   turns the forecast's mean and spread into an upper ``q``-quantile of the count whose
   empirical coverage tracks ``q``.
4. **React**: within a step, the arrival rate seen so far is a floor on the demand, so a burst
   is answered at the next tick, not the next step; requests in flight (running or queued)
   each keep a slot.
5. **Propagate** along workflow DAGs (:class:`~scheduler.forecast.dag.DagPropagator`): a
   downstream function's demand is at least its upstreams' demand times the learned fan-out,
   so a burst at the entry scales every stage in the same tick.
6. **Size the pool** (:mod:`scheduler.forecast.pool`): the calibrated predictive distribution
   of each step's count, sampled at 13 quantiles (decile midpoints and a finer upper tail,
   weighted by probability), becomes offered loads (rate x measured service time); the pool
   minimises expected idle replica-seconds plus priced request delay (a cold start with no
   warm replica, Erlang-C queueing otherwise), a request-second of delay costing
   ``q / (1 - q)`` idle replica-seconds, over every step until
   ``now + cold-start time + tick``; ``q`` from the workflows' QoS percentile and
   ``idle_weight`` unless ``quantile`` is set. Starting a replica is charged too
   (``start_weight`` x cold-start idle replica-seconds for each replica above those running
   or starting): a start takes CPU from the replicas serving, and its benefit only comes a
   cold start later. Requests running hold their slots; queued ones count as demand, not as
   one replica each.
7. **Hysteresis.** Scale up at once; scale down one replica per ``tick + cold start`` of lower
   sizing (a replica dropped sooner could not be back in time). A function whose cold start
   exceeds its workflows' QoS target keeps its last replica for the ski-rental break-even
   time ``q / (1 - q) x cold start`` after its last arrival (capped at ``max_keepalive_s``):
   a cold start there always violates the target. At most ``max(1, ceil(max_start_ratio x
   ready))`` replicas start at once (starts compete for CPU with each other).

Cost per tick: GP / LSTM fits are rationed (at most ``max_fits_per_tick`` per tick, the most
stale first, and per function at most once per ``refit_every_s``; torch runs them on one
thread); every other step only re-conditions the model, so a tick costs a few milliseconds.

Cold-start time and service time are measured from the observations (each replica seen
starting is timed until the ready count rises, a start in progress being a lower bound; mean
latency of ticks without cold starts, queueing or replicas starting) with ``cold_start_s`` /
``service_s`` as the defaults until measured.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scheduler.forecast import ConformalCalibrator, Forecaster, make_forecaster
from scheduler.forecast.dag import DagPropagator
from scheduler.forecast.pool import choose_level, delay_price_for_level, replicas_for_cost
from scheduler.policy import Decision, FunctionDecision, FunctionObservation, Observation, Policy
from scheduler.registry import register_policy

__all__ = ["AquatopePrewarmPolicy"]

_EPS = 1e-9
_LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99)
# levels at which the predictive distribution of a step's count is sampled (bin midpoints)
# and their probabilities (bin widths): deciles, then a finer upper tail for rare bursts
_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.995, 1.0)
_GRID = tuple((lo + hi) / 2 for lo, hi in itertools.pairwise(_EDGES))
_WEIGHTS = tuple(hi - lo for lo, hi in itertools.pairwise(_EDGES))
_MAX_COLD_S = 60.0  # cap on the lower bound a start in progress puts on the cold-start time
_HEAVY = ("gp", "lstm")  # forecasters whose fit is expensive: refits are rationed


@dataclass
class _Fn:
    """Per-function state kept between ticks."""

    history: deque[float]
    calibrator: ConformalCalibrator
    step_arrivals: float = 0.0
    step_elapsed_s: float = 0.0
    service_s: float | None = None
    cold_start_s: float | None = None
    start_times: deque[float] = field(default_factory=deque)  # replicas starting, FIFO
    prev_starting: int = 0
    prev_ready: int = 0
    steps_since_fit: int = 1_000_000
    last_fit_s: float | None = None  # when the GP / LSTM hyperparameters were last fitted
    held: int = 0  # last target (hysteresis)
    below_since_s: float | None = None  # since when the sized pool is below ``held``
    last_arrival_s: float | None = None
    fc_mean: list[float] = field(default_factory=list)
    fc_std: list[float] = field(default_factory=list)
    fc_model: str = ""
    forecaster: Forecaster | None = None
    forecaster_kind: str = ""
    cached: tuple[float, int, np.ndarray] | None = None  # (level, horizon, calibrated paths)


@register_policy("aquatope-prewarm")
class AquatopePrewarmPolicy(Policy):
    """Calibrated, concurrency-based, workflow-aware pre-warming (improves on Aquatope's)."""

    name = "aquatope-prewarm"
    description = (
        "Aquatope pre-warming: calibrated GP/LSTM demand forecasts -> Erlang-sized warm pools, "
        "propagated along workflow DAGs"
    )

    def __init__(
        self,
        forecaster: str = "gp",
        step_s: float = 10.0,
        history_steps: int = 720,
        min_history_steps: int = 12,
        refit_every_steps: int = 6,
        quantile: float = 0.0,
        idle_weight: float = 1.0,
        cold_start_s: float = 1.0,
        service_s: float = 0.5,
        queue_weight: float = 1.0,
        calibrate: bool = True,
        reactive: bool = True,
        dag: bool = True,
        seed: int = 0,
        refit_every_s: float = 60.0,
        max_fits_per_tick: int = 1,
        start_weight: float = 1.0,
        keepalive: bool = True,
        max_keepalive_s: float = 600.0,
        max_start_ratio: float = 1.0,
    ) -> None:
        """Build the policy.

        Args:
            forecaster: ``gp`` (default), ``lstm`` (the paper's network; needs
                ``48 + 12 + 8`` steps), ``ewma``, ``last`` or ``seasonal``.
            step_s: forecast step length in seconds (>= the tick; history unit).
            history_steps: steps of history kept per function.
            min_history_steps: steps before the chosen forecaster replaces the EWMA fallback.
            refit_every_steps: steps between hyperparameter refits (conditioning is every step;
                the LSTM retrains at most every 360 steps).
            refit_every_s: a function's GP is refitted at most this often (seconds), whatever
                ``refit_every_steps`` says.
            max_fits_per_tick: GP / LSTM fits one tick may run (the rest wait their turn,
                most stale first, re-conditioning with their last hyperparameters).
            start_weight: idle replica-seconds charged per second of cold start for each
                replica started (0 = starts are free).
            keepalive: keep one replica for a break-even time after the last arrival of a
                function whose cold start exceeds its QoS target (see the module docstring).
            max_keepalive_s: cap on that keep-alive time (seconds).
            max_start_ratio: replicas of one function starting at once are at most
                ``max(1, ceil(max_start_ratio x ready replicas))`` (starts compete for CPU
                with each other and the replicas serving); 0 = no limit.
            quantile: fixed level in (0, 1); 0 derives it from QoS and ``idle_weight``.
            idle_weight: relative cost of idle replica-seconds (1 = level equals the QoS
                percentile; larger keeps fewer replicas).
            cold_start_s: cold-start time assumed until one is measured (seconds).
            service_s: service time assumed until one is measured (seconds).
            queue_weight: weight of a second of queueing behind busy replicas relative to a
                second of cold start (1 = equal; 0 = size only against cold starts).
            calibrate: conformal calibration of the forecast quantiles.
            reactive: use the rate seen so far in the current step as a floor.
            dag: propagate demand along workflow DAGs.
            seed: seed of the model fits.

        Raises:
            ValueError: a parameter out of range.
        """
        from scheduler.forecast import FORECASTERS

        if forecaster not in FORECASTERS:
            raise ValueError(f"forecaster must be one of {FORECASTERS}, got {forecaster!r}")
        if not step_s > 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        if quantile and not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1) or 0, got {quantile}")
        if not idle_weight > 0:
            raise ValueError(f"idle_weight must be positive, got {idle_weight}")
        if min_history_steps < 4 or history_steps < min_history_steps:
            raise ValueError("need 4 <= min_history_steps <= history_steps")
        self.forecaster = forecaster
        self.step_s = float(step_s)
        self.history_steps = int(history_steps)
        self.min_history_steps = int(min_history_steps)
        self.refit_every_steps = max(1, int(refit_every_steps))
        self.quantile = float(quantile)
        self.idle_weight = float(idle_weight)
        self.default_cold_start_s = float(cold_start_s)
        self.default_service_s = float(service_s)
        if queue_weight < 0:
            raise ValueError(f"queue_weight must be >= 0, got {queue_weight}")
        self.queue_weight = float(queue_weight)
        self.calibrate = bool(calibrate)
        self.reactive = bool(reactive)
        self.dag = bool(dag)
        self.seed = int(seed)
        if not refit_every_s >= 0:
            raise ValueError(f"refit_every_s must be >= 0, got {refit_every_s}")
        if max_fits_per_tick < 1:
            raise ValueError(f"max_fits_per_tick must be >= 1, got {max_fits_per_tick}")
        if not start_weight >= 0:
            raise ValueError(f"start_weight must be >= 0, got {start_weight}")
        self.refit_every_s = float(refit_every_s)
        self.max_fits_per_tick = int(max_fits_per_tick)
        self.start_weight = float(start_weight)
        self.keepalive = bool(keepalive)
        self.max_keepalive_s = float(max_keepalive_s)
        if not max_start_ratio >= 0:
            raise ValueError(f"max_start_ratio must be >= 0, got {max_start_ratio}")
        self.max_start_ratio = float(max_start_ratio)
        self._prepared = False
        self._fns: dict[str, _Fn] = {}
        self._dag: DagPropagator | None = None
        self._dag_key: tuple[str, ...] = ()
        self._dag_state: Mapping[str, Any] = {}

    # -- per-function bookkeeping ----------------------------------------------------------------

    def _fn(self, name: str) -> _Fn:
        st = self._fns.get(name)
        if st is None:
            st = _Fn(
                history=deque(maxlen=self.history_steps),
                calibrator=ConformalCalibrator(levels=_LEVELS),
            )
            self._fns[name] = st
        return st

    def _observe_timing(self, st: _Fn, fo: FunctionObservation, obs: Observation) -> None:
        # latency is service time when nothing waited: no cold start, no queue, and no
        # replica starting (a start takes CPU from the replicas serving)
        clean = fo.cold_starts == 0 and fo.queued == 0 and fo.replicas_starting == 0
        if clean and fo.mean_service_s is not None and fo.completions > 0 and fo.mean_service_s > 0:
            w = min(1.0, 0.2 * fo.completions)
            prev = st.service_s if st.service_s is not None else fo.mean_service_s
            sample = min(fo.mean_service_s, 2.0 * prev)  # one slow tick cannot run away
            st.service_s = (1 - w) * prev + w * sample
        # cold starts: each replica that appears as starting is timed until it leaves that
        # state (first in, first out), so a function that keeps starting replicas is measured
        # (a replica becoming ready ends the oldest start; fewer starting otherwise = cancelled)
        done = min(max(fo.replicas_ready - st.prev_ready, 0), len(st.start_times))
        for _ in range(done):
            sample = max(obs.now_s - st.start_times.popleft(), 0.0)
            prev = st.cold_start_s if st.cold_start_s is not None else sample
            st.cold_start_s = 0.7 * prev + 0.3 * sample
        left = st.prev_starting - done
        for _ in range(min(max(left - fo.replicas_starting, 0), len(st.start_times))):
            st.start_times.popleft()
        started = fo.replicas_starting - min(left, fo.replicas_starting)
        if started > 0:
            st.start_times.extend([obs.now_s - obs.tick_s / 2.0] * started)
        st.prev_starting = fo.replicas_starting
        st.prev_ready = fo.replicas_ready

    def _cold(self, st: _Fn, now_s: float) -> float:
        """Cold-start time: measured (or the default), at least the oldest start in progress."""
        cold = st.cold_start_s if st.cold_start_s is not None else self.default_cold_start_s
        if st.start_times:  # a stuck start must not stretch the look-ahead without bound
            cold = max(cold, min(now_s - st.start_times[0], _MAX_COLD_S))
        return cold

    def _wanted_kind(self, st: _Fn) -> str:
        n = len(st.history)
        kind = self.forecaster if n >= self.min_history_steps else "ewma"
        if kind == "lstm" and n < 68:
            kind = "ewma"
        return kind

    def _fit_interval_s(self, kind: str) -> float:
        steps = self.refit_every_steps if kind != "lstm" else max(self.refit_every_steps, 360)
        return max(steps * self.step_s, self.refit_every_s)

    def _fit_due(self, st: _Fn, now_s: float) -> bool:
        """Whether a GP / LSTM fit is due for this function (first fit or stale)."""
        kind = self._wanted_kind(st)
        if kind not in _HEAVY:
            return False
        return st.last_fit_s is None or now_s - st.last_fit_s >= self._fit_interval_s(kind)

    def _model_for(self, st: _Fn, kind: str) -> tuple[Forecaster, str]:
        if st.forecaster is None or st.forecaster_kind != kind:
            opts: dict[str, Any] = {"step_s": self.step_s, "levels": _LEVELS}
            if kind in ("gp", "lstm"):
                opts["seed"] = self.seed
            if kind == "seasonal":
                opts["period_steps"] = max(2, round(3600.0 / self.step_s))
            st.forecaster = make_forecaster(kind, **opts)
            st.forecaster_kind = kind
            st.steps_since_fit = 1_000_000
        return st.forecaster, kind

    def _refresh_forecast(self, st: _Fn, now_s: float, horizon: int, may_fit: bool) -> None:
        history = np.asarray(st.history, dtype=np.float64)[None, :]
        kind = self._wanted_kind(st)
        if kind in _HEAVY and st.forecaster_kind != kind and not may_fit:
            kind = "ewma"  # no fit slot this tick: keep the cheap model until its turn
        fresh = st.forecaster is None or st.forecaster_kind != kind
        model, kind = self._model_for(st, kind)
        try:
            if kind in _HEAVY:
                # GP / LSTM fits cost 0.1 s to seconds: at most every refit interval, and only
                # in this tick's fit budget (the LSTM retrains at most every 360 steps)
                fit = fresh or (may_fit and self._fit_due(st, now_s))
            else:
                fit = st.steps_since_fit >= self.refit_every_steps
            if fit:
                model.fit(history, end_s=now_s)
                st.steps_since_fit = 0
                if kind in _HEAVY:
                    st.last_fit_s = now_s
            else:
                model.update(history, end_s=now_s)
            fc = model.predict(horizon)
        except (ValueError, RuntimeError):  # numerical trouble in a model fit: fall back
            model = make_forecaster("ewma", step_s=self.step_s, levels=_LEVELS)
            model.fit(history)
            fc = model.predict(horizon)
            st.forecaster, st.forecaster_kind, kind = None, "", "ewma"
            st.last_fit_s = now_s  # do not retry the failing fit before the next interval
        st.steps_since_fit += 1
        st.fc_mean = [float(v) for v in fc.mean[0]]
        st.fc_std = [float(v) for v in fc.std[0]]
        st.fc_model = kind

    def _ensure_dag(self, obs: Observation) -> DagPropagator | None:
        if not self.dag or not obs.workflows:
            return None
        key = tuple(sorted(obs.workflows))
        if self._dag is None or key != self._dag_key:
            state = self._dag.state_dict() if self._dag is not None else self._dag_state
            self._dag = DagPropagator(obs.workflows, decay=0.98)
            self._dag.load_state_dict(state)
            self._dag_key = key
        return self._dag

    def _level(self, name: str, obs: Observation) -> float:
        if self.quantile:
            return self.quantile
        pcts = [wf.qos.percentile for wf in obs.workflows.values() if name in wf.functions]
        return choose_level(pcts, idle_weight=self.idle_weight)

    # -- the decision ----------------------------------------------------------------------------

    def decide(self, observation: Observation) -> Decision:
        """Target warm replicas per function for this tick (see the module docstring)."""
        obs = observation
        if not self._prepared:
            self._prepare()
        dag = self._ensure_dag(obs)
        closed: dict[str, float] = {}
        for name, fo in obs.functions.items():
            st = self._fn(name)
            self._observe_timing(st, fo, obs)
            st.step_arrivals += fo.arrivals
            if fo.arrivals > 0:
                st.last_arrival_s = obs.now_s
            st.step_elapsed_s += obs.tick_s
            if st.step_elapsed_s + _EPS >= self.step_s:
                count = st.step_arrivals
                if self.calibrate and st.fc_mean:
                    st.calibrator.update(mean=st.fc_mean[0], std=st.fc_std[0], observed=count)
                st.history.append(count)
                st.cached = None
                closed[name] = count
                st.step_arrivals = 0.0
                st.step_elapsed_s = 0.0
        if dag is not None and closed:
            dag.observe_step(closed)

        # how far ahead each function must look: the rest of this step, cold start, next tick
        need: dict[str, int] = {}
        for name in obs.functions:
            st = self._fns[name]
            cold = self._cold(st, obs.now_s)
            rest = self.step_s - st.step_elapsed_s
            extra = max(0.0, cold + obs.tick_s - rest)
            need[name] = 1 + math.ceil(extra / self.step_s - _EPS)
        horizon = max(need.values(), default=1)
        # a bounded number of expensive fits per tick, the most stale first
        due = [name for name in closed if self._fit_due(self._fns[name], obs.now_s)]
        due.sort(
            key=lambda n: (self._fns[n].last_fit_s is not None, self._fns[n].last_fit_s or 0.0)
        )
        fit_now = set(due[: self.max_fits_per_tick])
        for name in closed:
            self._refresh_forecast(self._fns[name], obs.now_s, max(horizon, 2), name in fit_now)

        levels = {name: self._level(name, obs) for name in obs.functions}
        demand: dict[str, Any] = {}
        for name, fo in obs.functions.items():
            st = self._fns[name]
            demand[name] = self._own_demand(st, fo, levels[name], horizon)
        shifts: dict[str, int] = {}
        if dag is not None:
            for name in obs.functions:
                service = self._service(self._fns[name])
                shifts[name] = int(service // self.step_s)
            demand = dag.propagate(demand, shift_steps=shifts)

        out: dict[str, FunctionDecision] = {}
        for name, fo in obs.functions.items():
            st = self._fns[name]
            service = self._service(st)
            paths = np.asarray(demand.get(name, np.zeros((len(_GRID) + 1, horizon))))
            paths = paths.reshape(len(_GRID) + 1, -1)[:, : need[name]]
            cold = self._cold(st, obs.now_s)
            price = delay_price_for_level(levels[name])
            exposure = obs.tick_s + cold
            replicas = 0
            columns = {tuple(paths[: len(_GRID), k].tolist()) for k in range(paths.shape[1])}
            for column in columns:  # steps with the same scenarios need the same pool
                r_k = replicas_for_cost(
                    [v / self.step_s for v in column],
                    _WEIGHTS,
                    service,
                    exposure_s=exposure,
                    cold_start_s=cold,
                    delay_price=price,
                    queue_weight=self.queue_weight,
                    max_inflight=max(fo.max_inflight, 1),
                    max_replicas=fo.max_replicas,
                    current=fo.replicas_ready + fo.replicas_starting,
                    start_cost=self.start_weight * cold,
                )
                replicas = max(replicas, r_k)
            # requests running hold their slots; queued ones are demand (priced above): one
            # replica per queued request would start replicas slower than the queue drains
            running = max(fo.inflight - fo.queued, 0)
            busy = math.ceil(running / max(fo.max_inflight, 1))
            sized = max(replicas, busy)
            keep_s = self._keepalive_s(name, obs, cold, price)
            replicas = self._hysteresis(st, sized, obs.now_s, exposure, keep_s)
            replicas = self._limit_starts(replicas, fo)
            st.held = min(st.held, replicas)  # a capped target is re-sized next tick, not owed
            replicas = min(max(replicas, fo.min_replicas), fo.max_replicas)
            peak = float(paths[len(_GRID)].max()) if paths.size else 0.0
            out[name] = FunctionDecision(
                replicas=replicas,
                reason=(
                    f"{st.fc_model or 'none'} q={levels[name]:.3f} upper={peak:.2f}/step "
                    f"service={service:.3f}s cold={cold:.2f}s sized={sized} "
                    f"keepalive={keep_s:.0f}s"
                ),
            )
        return Decision(functions=out)

    def _keepalive_s(self, name: str, obs: Observation, cold_s: float, price: float) -> float:
        """Break-even keep-alive of a function's last replica after its last arrival.

        Ski rental: a cold start delays at least one request by ``cold_s``, worth
        ``price * cold_s`` idle replica-seconds, so an idle replica is worth keeping that long
        (capped at ``max_keepalive_s``). Only for functions whose cold start exceeds the
        strictest QoS target of their workflows (or any cold start when they serve none): a
        cold start shorter than the target does not violate it.
        """
        if not self.keepalive:
            return 0.0
        targets = [wf.qos.target_s for wf in obs.workflows.values() if name in wf.functions]
        slack_s = min(targets) if targets else 0.0
        if cold_s <= slack_s:
            return 0.0
        return min(price * cold_s, self.max_keepalive_s)

    def _prepare(self) -> None:
        """Load and warm the model library on the first tick (seconds), not in the first fit.

        The first tick comes before there is any history, usually before traffic; importing
        torch in the middle of a burst stalled a live run's daemon for 6 s.
        """
        self._prepared = True
        if self.forecaster == "gp":
            from scheduler.forecast.gp import GPForecaster

            # a 2-iteration fit on dummy data: the first fit in a process pays ~1 s of lazy
            # initialisation (imports, kernels) that later fits do not
            warm = GPForecaster(step_s=self.step_s, fit_iters=2, seed=self.seed)
            warm.fit(np.ones((1, 8)))
            warm.predict(1)
        elif self.forecaster == "lstm":
            import torch  # noqa: F401

    def _limit_starts(self, target: int, fo: FunctionObservation) -> int:
        """Cap the replicas starting at once to ``max(1, ceil(ratio x ready))``."""
        current = fo.replicas_ready + fo.replicas_starting
        if self.max_start_ratio <= 0 or target <= current:
            return target
        allowed = max(1, math.ceil(self.max_start_ratio * fo.replicas_ready))
        return min(target, fo.replicas_ready + max(allowed, fo.replicas_starting))

    @staticmethod
    def _hysteresis(st: _Fn, sized: int, now_s: float, down_delay_s: float, keep_s: float) -> int:
        """Scale up at once; scale down one replica per ``down_delay_s`` of lower demand.

        ``down_delay_s`` is the time a dropped replica takes to come back (next tick plus a
        cold start), so a dip shorter than that never drops one. The last replica also stays
        ``keep_s`` seconds after the function's last arrival.
        """
        if sized >= st.held:
            st.held = sized
            st.below_since_s = None
        elif st.below_since_s is None:
            st.below_since_s = now_s
        elif now_s - st.below_since_s + _EPS >= down_delay_s:
            st.held = max(st.held - 1, sized)
            st.below_since_s = now_s if st.held > sized else None
        recent = st.last_arrival_s is not None and now_s - st.last_arrival_s < keep_s
        if st.held == 0 and recent:
            st.held = 1
        return st.held

    def _service(self, st: _Fn) -> float:
        return st.service_s if st.service_s is not None else self.default_service_s

    def _own_demand(
        self, st: _Fn, fo: FunctionObservation, level: float, horizon: int
    ) -> np.ndarray:
        """Demand samples per step: ``(len(_GRID) + 1) x horizon`` counts (current step first).

        Rows ``0..len(_GRID)-1`` are the calibrated predictive quantiles at :data:`_GRID`;
        the last row is the calibrated ``level``-quantile; all floored to whole counts.
        """
        if st.cached is not None and st.cached[0] == level and st.cached[1] == horizon:
            paths = st.cached[2]
        else:
            paths = self._forecast_paths(st, level, horizon)
            st.cached = (level, horizon, paths)
        if self.reactive and st.step_elapsed_s > 0:
            seen = st.step_arrivals / st.step_elapsed_s * self.step_s
            paths = np.maximum(paths, seen)
        if self.reactive and fo.inflight > 0:  # each will call downstream stages soon
            paths = np.maximum(paths, float(fo.inflight))
        return paths

    def _forecast_paths(self, st: _Fn, level: float, horizon: int) -> np.ndarray:
        """Calibrated quantile rows of the last forecast (cached until the next step)."""
        paths = np.zeros((len(_GRID) + 1, horizon))
        if st.fc_mean:
            mean = np.asarray(st.fc_mean, dtype=np.float64)
            std = np.asarray(st.fc_std, dtype=np.float64)
            idx = np.minimum(np.arange(horizon), mean.size - 1)
            if self.calibrate:
                st.calibrator.track(level)
                paths = st.calibrator.upper_many(mean[idx], std[idx], (*_GRID, level))
            else:
                from statistics import NormalDist

                for row, u in enumerate((*_GRID, level)):
                    z = NormalDist().inv_cdf(u)
                    paths[row] = np.maximum(mean[idx] + z * std[idx], 0.0)
            paths = np.floor(paths + _EPS)  # quantiles of a whole count are whole counts
        return paths

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (model weights are not kept: models refit after a load)."""
        return {
            "functions": {
                name: {
                    "history": list(st.history),
                    "step_arrivals": st.step_arrivals,
                    "step_elapsed_s": st.step_elapsed_s,
                    "service_s": st.service_s,
                    "cold_start_s": st.cold_start_s,
                    "start_times": list(st.start_times),
                    "prev_starting": st.prev_starting,
                    "prev_ready": st.prev_ready,
                    "held": st.held,
                    "below_since_s": st.below_since_s,
                    "last_arrival_s": st.last_arrival_s,
                    "fc_mean": list(st.fc_mean),
                    "fc_std": list(st.fc_std),
                    "fc_model": st.fc_model,
                    "calibrator": st.calibrator.state_dict(),
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
            st.service_s = None if raw["service_s"] is None else float(raw["service_s"])
            st.cold_start_s = None if raw["cold_start_s"] is None else float(raw["cold_start_s"])
            st.start_times.extend(float(v) for v in raw.get("start_times", []))
            st.prev_starting = int(raw.get("prev_starting", 0))
            st.prev_ready = int(raw.get("prev_ready", 0))
            st.held = int(raw.get("held", 0))
            below = raw.get("below_since_s")
            st.below_since_s = None if below is None else float(below)
            last = raw.get("last_arrival_s")
            st.last_arrival_s = None if last is None else float(last)
            st.fc_mean = [float(v) for v in raw["fc_mean"]]
            st.fc_std = [float(v) for v in raw["fc_std"]]
            st.fc_model = str(raw.get("fc_model", ""))
            st.calibrator.load_state_dict(raw["calibrator"])
        self._dag_state = dict(state.get("dag", {}))
        self._dag = None
        self._dag_key = ()
