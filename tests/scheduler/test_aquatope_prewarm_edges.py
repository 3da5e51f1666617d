"""``aquatope-prewarm``'s edges, found by mutation testing: how far the look-ahead reaches,
when calibration takes over, when a fit is due and what counts as moved traffic, the need
cache, the first replica's experts beside upstream demand and later replicas, the
forecaster's calls (time given, failure fallback, the seasonal period), ``recent``'s
keep-alive boundary and replica count, how starts and service times are timed and which cold
start is planned with, upstream concurrency, state round trips (old states included) and the
registry signature."""

from __future__ import annotations

import json
import math
from collections import deque
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest

from scheduler.forecast import make_forecaster
from scheduler.forecast.base import Forecast
from scheduler.forecast.pool import replica_need_and_load
from scheduler.policies import aquatope_prewarm
from scheduler.policies.aquatope_prewarm import (
    SIZING_LEVELS,
    AquatopePrewarmPolicy,
    _signature,
)
from scheduler.policy import Decision, Observation
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import fobs, obs, step

PIPE = Workflow(
    name="pipe",
    qos=QoS(target_s=5.0),
    stages=(Stage("a", "entry"), Stage("b", "mid", after=("a",))),
)


def _p1(decision: Decision, name: str = "f") -> float:
    """The first replica's need, as the decision's reason states it."""
    reason = decision.functions[name].reason
    return float(reason.split("P1=")[1].split()[0])


def _pipe_tick(pol: AquatopePrewarmPolicy, now_s: float, entry: int = 0) -> Decision:
    fns = {
        "entry": fobs("entry", arrivals=entry, completions=entry, replicas_ready=0),
        "mid": fobs("mid", replicas_ready=0),
    }
    return pol.decide(Observation(now_s=now_s, tick_s=1.0, functions=fns, workflows={"pipe": PIPE}))


def _idle_pipes(ticks: int) -> tuple[AquatopePrewarmPolicy, AquatopePrewarmPolicy]:
    """Two EWMA pre-warmers, with and without the first replica's experts, after ``ticks``
    idle ticks of the ``pipe`` workflow."""
    mixed = AquatopePrewarmPolicy(forecaster="ewma")
    plain = AquatopePrewarmPolicy(forecaster="ewma", gaps=False, phase=False)
    for pol in (mixed, plain):
        for t in range(1, ticks + 1):
            _pipe_tick(pol, float(t))
    return mixed, plain


# -- the look-ahead and the scenarios ----------------------------------------------------------


def test_look_ahead_covers_the_next_step_only_when_a_start_would_end_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # lstm-paper (EWMA's upper bound until the LSTM trains) keeps ceil(max upper bound over
    # the steps the look-ahead touches); the bound widens with the horizon, so it shows how
    # many steps are touched. H = 1 s cold start + 1 s tick, steps of 10 s
    pol = AquatopePrewarmPolicy(forecaster="lstm-paper", max_start_ratio=0)
    monkeypatch.setattr(pol, "_prepare", lambda: None)  # no torch: the LSTM never trains here
    reasons = {}
    for t in range(1, 20):
        reasons[t] = step(pol, float(t), arrivals=1, completions=1).functions["f"].reason
    upper = pol._fns["f"].paper_upper  # made when the step closed at t = 10
    first, second = (math.ceil(u - 1e-9) for u in upper[:2])
    assert second > first  # the two steps tell apart
    # t = 10: the step just closed, 10 s left in the new one: H stays within it
    assert reasons[10].endswith(f"wanted={first}")
    # t = 19: 1 s left, a start now ends in the next step
    assert reasons[19].endswith(f"wanted={second}")


def _calibrated_fn(scores: int) -> tuple[AquatopePrewarmPolicy, Any]:
    pol = AquatopePrewarmPolicy(forecaster="ewma")
    st = pol._fn("f")
    for _ in range(scores):  # each step came in far above its forecast
        st.calibrator.update(mean=2.0, std=1.0, observed=9.0)
    st.fc_mean, st.fc_std = [2.0, 2.0], [1.0, 1.5]
    return pol, st


def test_calibrated_scenarios_replace_the_raw_quantiles_at_exactly_min_scores() -> None:
    pol, st = _calibrated_fn(scores=11)
    min_scores = st.calibrator.min_scores
    assert min_scores == 12
    z = np.array([[NormalDist().inv_cdf(q)] for q in SIZING_LEVELS])
    raw = np.maximum(np.array([2.0, 2.0]) + z * np.array([1.0, 1.5]), 0.0)
    np.testing.assert_allclose(pol._scenarios(st, 2), raw, rtol=1e-9)
    pol, st = _calibrated_fn(scores=min_scores)
    calibrated = st.calibrator.upper_many(np.array([2.0, 2.0]), np.array([1.0, 1.5]), SIZING_LEVELS)
    rows = pol._scenarios(st, 2)
    np.testing.assert_allclose(rows, calibrated)
    assert rows[len(SIZING_LEVELS) // 2, 0] > raw[len(SIZING_LEVELS) // 2, 0] + 3.0


# -- fits: when they are due, what tells a changed traffic ---------------------------------------


def test_signature_reads_the_last_96_steps_variance_stabilised() -> None:
    def expected(values: list[float]) -> tuple[float, float]:
        z = 2.0 * np.sqrt(np.asarray(values) + 0.375)
        return (float(z.mean()), float(z.std()))

    assert _signature(deque()) == (0.0, 0.0)
    short = [9.0, 0.0, 4.0]
    assert _signature(deque(short)) == pytest.approx(expected(short))  # every step counts
    long = [100.0] * 4 + [float(k % 5) for k in range(96)]
    assert _signature(deque(long)) == pytest.approx(expected(long[4:]))


def test_a_fit_is_due_after_the_interval_when_traffic_moved_or_at_max_age() -> None:
    pol = AquatopePrewarmPolicy(
        forecaster="gp", min_history_steps=4, refit_every_s=60.0, max_fit_age_s=300.0
    )
    st = pol._fn("f")
    assert not pol._fit_due(st, 0.0)  # too little history: EWMA, nothing to fit
    st.history.extend([3.0] * 12)
    assert pol._fit_due(st, 0.0)  # enough history, never fitted
    st.last_fit_s, st.forecaster_kind = 1000.0, "gp"
    st.fit_sig = _signature(st.history)
    assert not pol._fit_due(st, 1059.0)  # within the refit interval
    assert not pol._fit_due(st, 1060.0)  # due by time, but the traffic did not change
    assert not pol._fit_due(st, 1299.0)
    assert pol._fit_due(st, 1300.0)  # max_fit_age_s old: refitted all the same
    st.history.extend([30.0] * 12)
    assert not pol._fit_due(st, 1059.0)
    assert pol._fit_due(st, 1060.0)  # the traffic moved: refitted once the interval is over


# -- the forecaster's calls --------------------------------------------------------------------


class _Recording:
    """A forecaster that records its calls (a constant forecast of 2 per step), or fails."""

    def __init__(self, calls: list[tuple[str, float | None]], fail: bool) -> None:
        self.calls, self.fail, self.step_s = calls, fail, 10.0

    def fit(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        self.calls.append(("fit", end_s))
        if self.fail:
            raise ValueError("numerical trouble")

    def update(self, history: np.ndarray, *, end_s: float | None = None) -> None:
        self.calls.append(("update", end_s))

    def predict(self, horizon: int) -> Forecast:
        mean = np.full((1, horizon), 2.0)
        return Forecast(mean=mean, std=np.ones((1, horizon)), quantiles={})


def _with_recording(
    monkeypatch: pytest.MonkeyPatch, fail: bool
) -> tuple[AquatopePrewarmPolicy, list[tuple[str, float | None]]]:
    calls: list[tuple[str, float | None]] = []

    def build(kind: str, **opts: Any) -> Any:
        return _Recording(calls, fail) if kind == "last" else make_forecaster(kind, **opts)

    monkeypatch.setattr(aquatope_prewarm, "make_forecaster", build)
    pol = AquatopePrewarmPolicy(
        forecaster="last", step_s=2.0, min_history_steps=4, refit_every_steps=2
    )
    return pol, calls


def test_the_forecaster_is_told_when_the_last_step_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the LSTM's calendar features are read from it)
    pol, calls = _with_recording(monkeypatch, fail=False)
    for t in range(1, 15):
        step(pol, float(t), arrivals=1, completions=1)
    # history of 4 steps at t = 8: fitted, then updated, refitted every 2 steps
    assert calls == [("fit", 8.0), ("update", 10.0), ("fit", 12.0), ("update", 14.0)]
    assert pol._fns["f"].fc_model == "last" and pol._fns["f"].fc_mean[0] == 2.0


def test_a_failing_fit_falls_back_to_ewma_until_the_next_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pol, calls = _with_recording(monkeypatch, fail=True)
    for t in range(1, 9):
        d = step(pol, float(t), arrivals=3, completions=3)
    assert calls == [("fit", 8.0)]
    st = pol._fns["f"]
    assert st.fc_model == "ewma" and d.functions["f"].reason.startswith("ewma ")
    assert st.forecaster is None and st.last_fit_s == 8.0
    ewma = make_forecaster("ewma", step_s=2.0, levels=(0.5, 0.9))
    ewma.fit(np.asarray([list(st.history)]))
    assert st.fc_mean == pytest.approx(ewma.predict(len(st.fc_mean)).mean[0].tolist())
    assert st.fc_mean[0] == pytest.approx(6.0)


@pytest.mark.parametrize(("step_s", "period"), [(60.0, 60), (10.0, 360), (3600.0, 2)])
def test_the_seasonal_forecaster_repeats_the_hour(step_s: float, period: int) -> None:
    pol = AquatopePrewarmPolicy(forecaster="seasonal", step_s=step_s, min_history_steps=4)
    for t in range(1, 6):
        step(pol, t * step_s, tick_s=step_s, arrivals=1)
    model = pol._fns["f"].forecaster
    assert pol._fns["f"].fc_model == "seasonal"
    assert getattr(model, "period_steps", None) == period


# -- the need cache ----------------------------------------------------------------------------


def test_the_need_is_reused_while_its_inputs_stay_within_ten_percent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    computed: list[tuple[float, ...]] = []

    def counting(rates: list[float], *args: Any, **kwargs: Any) -> tuple[list[float], list[float]]:
        computed.append(tuple(rates))
        return replica_need_and_load(rates, *args, **kwargs)

    monkeypatch.setattr(aquatope_prewarm, "replica_need_and_load", counting)
    # every tick closes a 10 s step: the look-ahead always spans two steps, and the rates
    # change only with the forecast (uncalibrated: no calibrator taking over midway)
    pol = AquatopePrewarmPolicy(forecaster="ewma", gaps=False, phase=False, calibrate=False)

    def tick(t: int, calls: int) -> None:
        step(pol, 10.0 * t, tick_s=10.0, arrivals=calls, completions=0, max_replicas=50)

    for t in range(1, 6):  # 20 calls a step: the same forecast each time
        tick(t, 20)
    assert len(computed) == 1
    for t in range(6, 9):  # 21 a step: the forecast creeps up by less than 10 %
        tick(t, 21)
    assert len(computed) == 1
    cache = pol._fns["f"].need_cache
    assert cache is not None and cache[1][0] == pytest.approx(computed[0][0], rel=0.05)
    tick(9, 40)  # the forecast jumps by 30 %: the need is computed anew
    assert len(computed) == 2 and computed[1][0] > 1.1 * computed[0][0]


# -- the first replica's experts ---------------------------------------------------------------


def test_upstream_calls_this_step_keep_the_forecast_as_the_first_replicas_floor() -> None:
    # after 200 idle ticks the experts are scored and predict (almost) no call; the entry's
    # calls in this step raise mid's forecast through the DAG, which no expert saw: mid's
    # first replica is needed at least as much as that forecast says (as with no experts)
    mixed, plain = _idle_pipes(200)
    assert (mixed._fns["mid"].mixture or pytest.fail("no mixture")).scored >= 120
    for t, calls in ((201, 3), (202, 3), (203, 3)):  # mid-step: two ticks with calls are a rate
        with_experts, alone = _pipe_tick(mixed, float(t), calls), _pipe_tick(plain, float(t), calls)
    assert _p1(alone, "mid") > 0.5
    assert _p1(with_experts, "mid") == _p1(alone, "mid")
    assert with_experts.functions["mid"].replicas == alone.functions["mid"].replicas


def _timer_pipe_tick(pol: AquatopePrewarmPolicy, now_s: float, fire: bool) -> Decision:
    """One tick of ``pipe`` whose entry and mid each take a call when it fires."""
    n = int(fire)
    fns = {
        name: fobs(name, arrivals=n, completions=n, mean_service_s=0.05 if n else None)
        for name in ("entry", "mid")
    }
    return pol.decide(Observation(now_s=now_s, tick_s=1.0, functions=fns, workflows={"pipe": PIPE}))


def test_one_upstream_batch_is_not_a_rate_for_the_rest_of_its_step() -> None:
    # a timer fires the workflow at second 32 of every minute, one call per stage, done in
    # its tick; two ticks after a firing, in the same step, mid's first replica is the
    # experts' call (the next firing is a minute away), not held at the rate forecast until
    # the step ends (that held the torch stages 5 s after each firing)
    mixed = AquatopePrewarmPolicy(forecaster="ewma", cold_start_s=4.0)
    plain = AquatopePrewarmPolicy(forecaster="ewma", cold_start_s=4.0, gaps=False, phase=False)
    for t in range(1, 1835):
        fire = t % 60 == 32
        with_experts = _timer_pipe_tick(mixed, float(t), fire)
        alone = _timer_pipe_tick(plain, float(t), fire)
    assert mixed._fns["entry"].step_arrivals == 1  # still the firing's step
    assert _p1(alone, "mid") > 0.015  # the rate forecast: over 5 s / 480 s, worth a replica
    assert alone.functions["mid"].replicas == 1
    assert _p1(with_experts, "mid") < 0.2 * _p1(alone, "mid")
    assert with_experts.functions["mid"].replicas == 0


def test_the_experts_cap_later_replicas_but_do_not_drop_them() -> None:
    # steady traffic that needs several replicas, every call finished within its tick (so the
    # experts decide the first replica): while they follow the forecast, each later replica
    # is needed as without experts
    mixed = AquatopePrewarmPolicy(forecaster="ewma", max_start_ratio=0)
    plain = AquatopePrewarmPolicy(forecaster="ewma", gaps=False, phase=False, max_start_ratio=0)
    wanted = []
    for t in range(1, 41):
        f = fobs("f", arrivals=8, completions=8, mean_service_s=0.5, max_replicas=50)
        o = Observation(now_s=float(t), tick_s=1.0, functions={"f": f})
        a, b = mixed.decide(o), plain.decide(o)
        assert a.functions["f"].replicas == b.functions["f"].replicas
        wanted.append(a.functions["f"].replicas or 0)
    assert max(wanted) >= 4


# -- forecaster="recent" -----------------------------------------------------------------------


def test_recent_keeps_a_replica_exactly_the_window_after_its_last_use() -> None:
    pol = AquatopePrewarmPolicy(forecaster="recent", recent_window_s=30.0)
    assert step(pol, 1.0, arrivals=1, inflight=1).functions["f"].replicas == 1
    kept = {t: step(pol, float(t)).functions["f"].replicas for t in range(2, 33)}
    assert kept[30] == 1  # 29 s after
    assert kept[31] == 0 and kept[32] == 0  # 30 s after: gone


def test_recent_counts_replicas_by_requests_each_accepts() -> None:
    pol = AquatopePrewarmPolicy(forecaster="recent", max_start_ratio=0)
    d = step(pol, 1.0, arrivals=8, inflight=8, max_inflight=4, replicas_ready=2)
    assert d.functions["f"].replicas == 2
    assert len(pol._fns["f"].seen_s) == 2
    d = step(pol, 2.0, arrivals=9, inflight=9, max_inflight=4, replicas_ready=2)
    assert d.functions["f"].replicas == 3  # 9 calls, 4 a replica


def test_recent_has_no_forecast_and_says_so() -> None:
    pol = AquatopePrewarmPolicy(forecaster="recent", step_s=2.0, min_history_steps=4)
    for t in range(1, 21):  # ten steps closed: more than min_history_steps
        d = step(pol, float(t), arrivals=1, inflight=1)
        assert d.functions["f"].reason.startswith("recent P1=1.000")
    st = pol._fns["f"]
    assert st.forecaster is None and st.fc_mean == [] and st.fc_model == ""


# -- state -------------------------------------------------------------------------------------


def test_learned_timer_periods_survive_a_state_round_trip() -> None:
    pol = AquatopePrewarmPolicy(forecaster="ewma")
    for t in range(1, 400):  # a timer every 37 s: off the calendar, so it must be learned
        n = 1 if t % 37 == 0 else 0
        step(pol, float(t), arrivals=n, completions=n, replicas_ready=0)
    state = json.loads(json.dumps(pol.state_dict()))
    learned = state["functions"]["f"]["periodic"]["learned"]
    assert any(abs(p - 37.0) <= 1.0 for p in learned), learned
    restored = AquatopePrewarmPolicy(forecaster="ewma")
    restored.load_state_dict(state)
    assert json.loads(json.dumps(restored.state_dict())) == state
    for t in range(400, 480):
        n = 1 if t % 37 == 0 else 0
        o = Observation(now_s=float(t), tick_s=1.0, functions={"f": fobs("f", arrivals=n)})
        assert restored.decide(o) == pol.decide(o)


def _state_run(forecaster: str) -> tuple[AquatopePrewarmPolicy, list[Observation]]:
    """29 ticks of calls with replicas starting (one timed, two in progress at the end: a step
    half done), then the 21 ticks that follow, not yet decided."""
    pol = AquatopePrewarmPolicy(forecaster=forecaster, miss_price_s=50.0)
    ticks = []
    for t in range(1, 51):
        starting = 1 if 3 <= t < 8 else 2 if 26 <= t < 36 else 0
        ready = 1 if t < 26 else 1 + 2 * (t >= 36)
        calls = 2 if t % 4 else 0
        f = fobs(
            "f",
            arrivals=calls,
            inflight=calls,
            completions=calls,
            mean_service_s=0.4,
            replicas_ready=ready if t >= 8 else 0,
            replicas_starting=starting,
            max_inflight=1,
        )
        ticks.append(Observation(now_s=float(t), tick_s=1.0, functions={"f": f}))
    for o in ticks[:29]:
        pol.decide(o)
    return pol, ticks[29:]


@pytest.mark.parametrize("forecaster", ["ewma", "recent", "lstm-paper"])
def test_state_round_trip_keeps_starts_in_progress_and_what_each_forecaster_learned(
    monkeypatch: pytest.MonkeyPatch, forecaster: str
) -> None:
    monkeypatch.setattr(AquatopePrewarmPolicy, "_prepare", lambda self: None)  # no torch
    pol, rest = _state_run(forecaster)
    st = pol._fns["f"]
    assert len(st.start_times) == 2 and len(st.cold_samples) == 1
    if forecaster == "recent":
        assert st.seen_s
    if forecaster == "lstm-paper":
        assert st.paper_upper
    state = json.loads(json.dumps(pol.state_dict()))
    restored = AquatopePrewarmPolicy(forecaster=forecaster, miss_price_s=50.0)
    restored.load_state_dict(state)
    assert json.loads(json.dumps(restored.state_dict())) == state
    assert restored._fns["f"].cold_upper_s == st.cold_upper_s
    for o in rest:  # the two starts finish at t = 36: timed alike
        assert restored.decide(o) == pol.decide(o)
    assert list(restored._fns["f"].cold_samples) == list(st.cold_samples)
    assert len(st.cold_samples) == 3


def test_a_state_from_before_the_newer_fields_loads_with_their_defaults() -> None:
    pol, rest = _state_run("ewma")
    state = json.loads(json.dumps(pol.state_dict()))
    raw = state["functions"]["f"]
    old = {
        k: raw[k]
        for k in (
            "history",
            "step_arrivals",
            "step_elapsed_s",
            "service_s",
            "cold_start_s",
            "fc_mean",
            "fc_std",
            "calibrator",
        )
    }
    assert raw["step_arrivals"] > 0 and raw["prev_ready"] > 0 and raw["prev_starting"] > 0
    restored = AquatopePrewarmPolicy(forecaster="ewma", miss_price_s=50.0)
    restored.load_state_dict({"functions": {"f": old}})
    st = restored._fns["f"]
    assert st.step_first_batch == raw["step_arrivals"] and st.step_active_ticks == 1
    assert (st.prev_starting, st.prev_ready) == (0, 0)
    assert not st.start_times and not st.cold_samples and st.cold_upper_s is None
    assert st.seen_s == [] and st.paper_upper == [] and st.fc_model == ""
    assert st.activity is None and st.mixture is None
    assert restored.decide(rest[0]).functions["f"].replicas is not None


def test_traffic_moved_by_half_a_unit_of_level_or_a_halved_or_doubled_spread() -> None:
    from scheduler.policies.aquatope_prewarm import _moved

    assert not _moved((10.0, 0.2), (10.4, 0.2))  # level: half a unit (spread below 1)
    assert _moved((10.0, 0.2), (10.6, 0.2))
    assert _moved((10.0, 0.2), (9.4, 0.2))
    assert not _moved((10.0, 4.0), (11.9, 4.0))  # ... or half the spread above 1
    assert _moved((10.0, 4.0), (12.1, 4.0))
    assert not _moved((10.0, 1.0), (10.0, 0.5))  # spread: (0.6 / 1.1) within [0.5, 2]
    assert _moved((10.0, 1.0), (10.0, 0.3))
    assert not _moved((10.0, 1.0), (10.0, 2.0))
    assert _moved((10.0, 1.0), (10.0, 2.5))


def test_the_registry_signature_is_one_keyword_only_parameter_per_field() -> None:
    import inspect
    from dataclasses import fields

    from scheduler.policies.prewarm_config import PrewarmConfig

    sig = aquatope_prewarm._registry_signature()
    assert inspect.signature(AquatopePrewarmPolicy.__init__) == sig
    names = [f.name for f in fields(PrewarmConfig)]
    assert list(sig.parameters) == ["self", *names]
    this = sig.parameters["self"]
    assert this.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for f in fields(PrewarmConfig):
        p = sig.parameters[f.name]
        assert (p.kind, p.default, p.annotation) == (
            inspect.Parameter.KEYWORD_ONLY,
            f.default,
            f.type,
        )
    assert aquatope_prewarm.config_annotations() == {f.name: f.type for f in fields(PrewarmConfig)}


# -- timing: service and cold-start times ------------------------------------------------------


def test_cold_start_plans_with_the_larger_of_mean_and_priced_lead_and_a_start_in_progress() -> None:
    from scheduler.policies.aquatope_prewarm import _lead_s

    cheap = AquatopePrewarmPolicy(forecaster="ewma", cold_start_s=2.0, miss_price_s=1.0)
    st = cheap._fn("f")
    assert cheap._cold(st, 0.0) == 2.0  # nothing measured: the default
    st.cold_start_s = 3.0
    st.cold_samples.extend([1.0, 1.0, 6.0])
    st.cold_upper_s = _lead_s(st.cold_samples, 1.0)
    assert st.cold_upper_s == 1.0  # a miss worth a second: the usual start
    assert cheap._cold(st, 0.0) == 3.0  # the running mean is more
    st.cold_upper_s = 6.0
    assert cheap._cold(st, 0.0) == 6.0
    st.start_times.append(100.0)  # a start 8 s in progress: at least that
    assert cheap._cold(st, 108.0) == 8.0
    assert cheap._start_left_s(st, 108.0) == 0.0
    assert cheap._start_left_s(st, 102.0) == 4.0
    assert cheap._cold(st, 1000.0) == 60.0  # a stuck start stretches it to a minute at most


def test_service_time_is_learned_only_from_ticks_where_nothing_waited() -> None:
    pol = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
    kw = {"completions": 5, "mean_service_s": 3.0}
    step(pol, 1.0, cold_starts=1, **kw)  # a cold start's wait
    step(pol, 2.0, queued=1, inflight=1, **kw)  # a queue
    step(pol, 3.0, replicas_starting=1, **kw)  # a start taking CPU
    assert pol._fns["f"].service_s is None
    step(pol, 4.0, **kw)
    assert pol._fns["f"].service_s == 3.0  # the first clean sample replaces the default


def test_a_busy_functions_service_estimate_is_not_its_last_ticks_mean() -> None:
    # eight calls a tick whose mean alternates 4 / 27 ms (a burst's processor sharing): the
    # estimate must not follow each tick (it did: the replica need went up and down, 900
    # starts in two hours), yet a lasting change is taken up within seconds
    pol = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
    seen = []
    for t in range(1, 121):
        step(pol, float(t), arrivals=8, completions=8, mean_service_s=(0.004, 0.027)[t % 2])
        seen.append(pol._fns["f"].service_s)
    late = seen[-40:]
    assert max(late) / min(late) < 1.3
    assert 0.008 < sum(late) / len(late) < 0.027
    for t in range(121, 151):  # every call now takes 50 ms
        step(pol, float(t), arrivals=8, completions=8, mean_service_s=0.05)
    assert pol._fns["f"].service_s == pytest.approx(0.05, rel=0.1)


def test_a_tick_is_one_service_sample_however_many_calls_finished_in_it() -> None:
    # calls that finish in one tick shared its contention: three of them move the estimate
    # as far as one does (a fifth of the way)
    for calls in (1, 3):
        pol = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
        step(pol, 1.0, completions=calls, mean_service_s=1.0)
        step(pol, 61.0, completions=calls, mean_service_s=2.0)
        assert pol._fns["f"].service_s == pytest.approx(1.2)


def test_each_start_is_timed_when_another_finishes_first() -> None:
    pol = AquatopePrewarmPolicy(forecaster="ewma")
    # two replicas seen starting at t = 1 (timed from t = 0.5); one is up at t = 3, the other
    # at t = 5, and one more starts at t = 4 and is cancelled at t = 6
    for t, ready, starting in [(1, 0, 2), (2, 0, 2), (3, 1, 1), (4, 1, 2), (5, 2, 1), (6, 2, 0)]:
        step(pol, float(t), replicas_ready=ready, replicas_starting=starting)
    st = pol._fns["f"]
    assert list(st.cold_samples) == [2.5, 4.5]
    assert not st.start_times


# -- DAG: upstream calls -----------------------------------------------------------------------


def test_upstream_calls_of_an_earlier_step_are_left_to_the_experts() -> None:
    # the entry's calls closed their step: mid's forecast rose, but no call is seen in the
    # current step, so the scored experts (who predict none) temper the forecast
    mixed, plain = _idle_pipes(209)
    with_experts, alone = _pipe_tick(mixed, 210.0, 3), _pipe_tick(plain, 210.0, 3)
    assert mixed._fns["entry"].step_arrivals == 0  # the step closed with those calls
    assert _p1(alone, "mid") > 0.1
    assert _p1(with_experts, "mid") < 0.9 * _p1(alone, "mid")


def test_a_short_upstream_call_brings_at_most_one_concurrent_call_each() -> None:
    # four 0.1 s entry calls running, mid takes 1 s: each brings one call to mid, which then
    # runs for longer than the call that sent it (not more than one at a time)
    pol = AquatopePrewarmPolicy(forecaster="ewma", max_start_ratio=0)
    services = {"entry": 0.1, "mid": 1.0}
    warm = {n: fobs(n, completions=5, mean_service_s=s) for n, s in services.items()}
    pol.decide(Observation(now_s=1.0, tick_s=1.0, functions=warm, workflows={"pipe": PIPE}))
    fns = {
        "entry": fobs("entry", inflight=4, replicas_ready=4),
        "mid": fobs("mid", replicas_ready=0),
    }
    d = pol.decide(Observation(now_s=2.0, tick_s=1.0, functions=fns, workflows={"pipe": PIPE}))
    assert d.functions["mid"].replicas == 4


def test_recent_spreads_a_ticks_calls_over_its_service_time() -> None:
    # 6 calls in a 1 s tick, 0.5 s each, none in flight at the end: 3 at a time
    pol = AquatopePrewarmPolicy(forecaster="recent", service_s=0.5, max_start_ratio=0)
    d = step(pol, 1.0, arrivals=6, completions=6, mean_service_s=0.5, replicas_ready=1)
    assert d.functions["f"].replicas == 3
    d = step(pol, 2.0, arrivals=2, completions=2, mean_service_s=0.5, replicas_ready=3)
    assert d.functions["f"].replicas == 3  # the window keeps what the busiest tick needed


def test_a_call_that_waited_for_a_start_is_not_a_service_sample_when_it_finishes() -> None:
    # a call arrives cold, waits five ticks for its replica and finishes in a tick with no
    # start, no queue and no cold start: its latency is the wait plus its service
    pol = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
    step(pol, 1.0, arrivals=1, cold_starts=1, queued=1, inflight=1, replicas_starting=1)
    for t in range(2, 6):
        step(pol, float(t), queued=1, inflight=1, replicas_starting=1)
    step(pol, 6.0, completions=1, mean_service_s=5.2, replicas_ready=1)
    assert pol._fns["f"].service_s is None
    step(pol, 7.0, arrivals=1, completions=1, mean_service_s=0.02, replicas_ready=1)
    assert pol._fns["f"].service_s == 0.02


def test_calls_in_flight_from_a_waiting_tick_are_counted_out_as_they_finish() -> None:
    # eight calls in flight when a replica was starting: a tick finishing five of them is
    # not clean, the tick finishing the last three is not either, the next one is
    pol = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
    step(pol, 1.0, arrivals=8, inflight=8, replicas_starting=1, replicas_ready=4)
    step(pol, 2.0, completions=5, inflight=3, mean_service_s=2.0, replicas_ready=5)
    step(pol, 3.0, completions=3, inflight=0, mean_service_s=2.0, replicas_ready=5)
    assert pol._fns["f"].service_s is None
    step(pol, 4.0, arrivals=2, completions=2, mean_service_s=0.1, replicas_ready=5)
    assert pol._fns["f"].service_s == 0.1
    # never more waited calls than are in flight: a drained gateway clears them
    step(pol, 5.0, arrivals=4, inflight=4, queued=4, replicas_ready=5)
    step(pol, 6.0, completions=1, mean_service_s=3.0, inflight=0, replicas_ready=5)
    step(pol, 7.0, completions=1, mean_service_s=0.1, replicas_ready=5)
    assert pol._fns["f"].service_s == pytest.approx(0.1)


def test_waited_calls_in_flight_survive_a_state_round_trip() -> None:
    pol = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
    step(pol, 1.0, arrivals=3, cold_starts=3, inflight=3, replicas_starting=1)
    again = AquatopePrewarmPolicy(forecaster="ewma", service_s=0.5)
    again.load_state_dict(json.loads(json.dumps(pol.state_dict())))
    assert again._fns["f"].waited_in_flight == 3
    step(again, 2.0, completions=3, mean_service_s=4.0, replicas_ready=1)
    assert again._fns["f"].service_s is None


def test_steps_keep_their_length_when_live_ticks_jitter() -> None:
    """Live, a tick covers the time since the previous one, a few ms more or less than the
    nominal second; a step closes at the first tick past its end and what ran past it
    counts towards the next, so 600 jittery seconds make 60 steps of 10 s (dropping the
    excess, half the steps took an extra tick: 57). A tick that overran (the first one's
    imports) is time too."""
    rng = np.random.default_rng(7)
    policy = AquatopePrewarmPolicy(step_s=10.0)
    times = np.arange(1.0, 601.0) + rng.uniform(-0.004, 0.004, 600)
    times[1:] += 1.2  # the first tick overran: the next came 2.2 s later
    last = 0.0
    for now in times:
        policy.decide(obs(float(now), {"f": fobs("f", arrivals=1)}, tick_s=float(now - last)))
        last = float(now)
    state = policy.state_dict()["functions"]["f"]
    assert len(state["history"]) == 60
    assert sum(state["history"]) + state["step_arrivals"] == 600  # every call in one step
