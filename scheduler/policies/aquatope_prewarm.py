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
   ``idle_weight`` unless ``quantile`` is set.

Cold-start time and service time are measured from the observations (replicas starting; mean
latency of ticks without cold starts or queueing) with ``cold_start_s`` / ``service_s`` as the
defaults until measured.
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


@dataclass
class _Fn:
    """Per-function state kept between ticks."""

    history: deque[float]
    calibrator: ConformalCalibrator
    step_arrivals: float = 0.0
    step_elapsed_s: float = 0.0
    service_s: float | None = None
    cold_start_s: float | None = None
    starting_since_s: float | None = None
    steps_since_fit: int = 1_000_000
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
        clean = fo.cold_starts == 0 and fo.queued == 0  # latency then is service time
        if clean and fo.mean_service_s is not None and fo.completions > 0 and fo.mean_service_s > 0:
            w = min(1.0, 0.2 * fo.completions)
            prev = st.service_s if st.service_s is not None else fo.mean_service_s
            st.service_s = (1 - w) * prev + w * fo.mean_service_s
        if fo.replicas_starting > 0 and st.starting_since_s is None:
            st.starting_since_s = obs.now_s - obs.tick_s / 2.0
        elif fo.replicas_starting == 0 and st.starting_since_s is not None:
            sample = max(obs.now_s - st.starting_since_s, 0.0)
            prev = st.cold_start_s if st.cold_start_s is not None else sample
            st.cold_start_s = 0.7 * prev + 0.3 * sample
            st.starting_since_s = None

    def _model_for(self, st: _Fn) -> tuple[Forecaster, str]:
        n = len(st.history)
        kind = self.forecaster if n >= self.min_history_steps else "ewma"
        if kind == "lstm" and n < 68:
            kind = "ewma"
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

    def _refresh_forecast(self, st: _Fn, now_s: float, horizon: int) -> None:
        history = np.asarray(st.history, dtype=np.float64)[None, :]
        model, kind = self._model_for(st)
        # the LSTM trains for seconds: retrain it at most hourly (every 360 steps of 10 s)
        every = self.refit_every_steps if kind != "lstm" else max(self.refit_every_steps, 360)
        try:
            if st.steps_since_fit >= every:
                model.fit(history, end_s=now_s)
                st.steps_since_fit = 0
            else:
                model.update(history, end_s=now_s)
            fc = model.predict(horizon)
        except (ValueError, RuntimeError):  # numerical trouble in a model fit: fall back
            model = make_forecaster("ewma", step_s=self.step_s, levels=_LEVELS)
            model.fit(history)
            fc = model.predict(horizon)
            st.forecaster, st.forecaster_kind, kind = None, "", "ewma"
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
        dag = self._ensure_dag(obs)
        closed: dict[str, float] = {}
        for name, fo in obs.functions.items():
            st = self._fn(name)
            self._observe_timing(st, fo, obs)
            st.step_arrivals += fo.arrivals
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
            cold = st.cold_start_s if st.cold_start_s is not None else self.default_cold_start_s
            rest = self.step_s - st.step_elapsed_s
            extra = max(0.0, cold + obs.tick_s - rest)
            need[name] = 1 + math.ceil(extra / self.step_s - _EPS)
        horizon = max(need.values(), default=1)
        for name in closed:
            self._refresh_forecast(self._fns[name], obs.now_s, max(horizon, 2))

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
            cold = st.cold_start_s if st.cold_start_s is not None else self.default_cold_start_s
            price = delay_price_for_level(levels[name])
            exposure = obs.tick_s + cold
            replicas = 0
            for k in range(paths.shape[1]):
                r_k = replicas_for_cost(
                    (paths[: len(_GRID), k] / self.step_s).tolist(),
                    _WEIGHTS,
                    service,
                    exposure_s=exposure,
                    cold_start_s=cold,
                    delay_price=price,
                    queue_weight=self.queue_weight,
                    max_inflight=max(fo.max_inflight, 1),
                    max_replicas=fo.max_replicas,
                )
                replicas = max(replicas, r_k)
            busy = math.ceil(fo.inflight / max(fo.max_inflight, 1))
            replicas = min(max(replicas, busy, fo.min_replicas), fo.max_replicas)
            peak = float(paths[len(_GRID)].max()) if paths.size else 0.0
            out[name] = FunctionDecision(
                replicas=replicas,
                reason=(
                    f"{st.fc_model or 'none'} q={levels[name]:.3f} upper={peak:.2f}/step "
                    f"service={service:.3f}s"
                ),
            )
        return Decision(functions=out)

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
            for row, u in enumerate((*_GRID, level)):
                if self.calibrate:
                    paths[row] = st.calibrator.upper(mean[idx], std[idx], u)
                else:
                    from statistics import NormalDist

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
                    "starting_since_s": st.starting_since_s,
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
            since = raw.get("starting_since_s")
            st.starting_since_s = None if since is None else float(since)
            st.fc_mean = [float(v) for v in raw["fc_mean"]]
            st.fc_std = [float(v) for v in raw["fc_std"]]
            st.fc_model = str(raw.get("fc_model", ""))
            st.calibrator.load_state_dict(raw["calibrator"])
        self._dag_state = dict(state.get("dag", {}))
        self._dag = None
        self._dag_key = ()
