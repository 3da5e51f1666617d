"""Periodic experts and their mixture: the activity log against brute force, timers found at
calendar and learned periods, the mixture following the expert that predicts, and the
policy warming a timer's first replica from them."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.forecast.mixture import ExpertMixture, group_prior
from scheduler.forecast.phase import ActivityLog, PeriodicExperts
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from tests.scheduler.sched_helpers import step


def _log(active: set[int], until: int, **kw: float) -> ActivityLog:
    log = ActivityLog(span_s=kw.pop("span_s", 1e9), **kw)  # type: ignore[arg-type]
    for t in range(1, until + 1):
        log.observe(float(t), active=t in active, tick_s=1.0)
    return log


def test_activity_log_answers_window_queries_as_brute_force() -> None:
    rng = np.random.default_rng(3)
    active = {int(t) for t in rng.choice(np.arange(1, 2000), size=300, replace=False)}
    log = _log(active, 2000)
    assert len(log.runs) < 300  # consecutive active ticks merged into runs
    lo = rng.uniform(0, 2000, 500)
    hi = lo + rng.uniform(0, 30, 500)
    got = log.active_in(lo, hi)
    want = [any(a < t <= b for t in active) for a, b in zip(lo, hi, strict=True)]
    assert got.tolist() == want
    assert [log.any_active(a, b) for a, b in zip(lo, hi, strict=True)] == want


def test_activity_log_forgets_beyond_its_span_and_knows_what_it_forgot() -> None:
    log = _log({10, 11, 500}, 600, span_s=200.0)
    assert log.runs == [(500.0, 500.0)]
    assert log.origin_s == 400.0  # the quiet time after the cut is still known quiet
    capped = _log({10, 20, 30, 40}, 100, max_runs=2)
    assert capped.runs == [(30.0, 30.0), (40.0, 40.0)]
    assert capped.origin_s == 29.0  # what the cap dropped is unknown, not quiet
    again = ActivityLog(span_s=1e9)
    again.load_state_dict(capped.state_dict())
    assert again.runs == capped.runs and again.origin_s == capped.origin_s
    with pytest.raises(ValueError, match="span_s"):
        ActivityLog(span_s=0.0)


def test_a_timer_is_certain_at_its_phase_and_unlikely_elsewhere() -> None:
    firings = set(range(100, 3600, 300))  # every 5 minutes at second 100
    log = _log(firings, 3000)
    experts = PeriodicExperts(learned=0)
    names = experts.names
    at_phase, _ = experts.predict(log, now_s=3097.0, horizon_s=3.0)
    between, _ = experts.predict(log, now_s=3200.0, horizon_s=3.0)
    p300 = names.index("period-300s")
    assert at_phase[p300] > 0.85 > 0.1 > between[p300]
    assert at_phase[0] == between[0] < 0.05  # the base rate knows no phase
    # a period the timer is not a multiple of sees no firing at the same window
    assert at_phase[names.index("period-420s")] < 0.2


def test_a_period_off_the_calendar_is_learned_from_recurring_gaps() -> None:
    firings = set(range(50, 3000, 75))  # every 75 s: no calendar period fits
    log = _log(firings, 2000)
    experts = PeriodicExperts()
    gaps = np.diff(sorted(t for t in firings if t <= 2000)).astype(float)
    experts.learn_periods(gaps, tick_s=1.0)
    assert 75.0 in experts.periods_s
    probs, cycles = experts.predict(log, now_s=2072.0, horizon_s=3.0)  # 2075 = 50 + 27 x 75
    slot = experts.periods_s.index(75.0) + 1
    assert cycles[slot] >= 20 and probs[slot] > 0.9
    restored = PeriodicExperts()
    restored.load_state_dict(experts.state_dict())
    assert restored.periods_s == experts.periods_s


def test_the_mixture_moves_to_the_expert_that_predicts_and_counts_overlap_once() -> None:
    mix = ExpertMixture(("right", "wrong"), half_life=1e9, share=0.0)
    for t in range(200):
        outcome = t % 10 == 0
        probs = np.array([0.9 if outcome else 0.05, 0.5])
        mix.record(float(t), float(t) + 1.0, probs, tick_s=1.0)
        mix.resolve(float(t) + 1.0, lambda lo, hi, hit=outcome: hit)
    w = mix.weights()
    assert w[0] > 0.999 and mix.scored == 200
    assert mix.predict(np.array([0.9, 0.5])) == pytest.approx(0.9, abs=1e-3)
    # fixed share: the prior keeps 2 % of the weight, however wrong an expert has been
    shared = ExpertMixture(("right", "wrong"), half_life=1e9)
    shared.load_state_dict(mix.state_dict())
    assert shared.weights() == pytest.approx([0.99, 0.01], abs=1e-6)
    assert shared.predict(np.array([0.0, 0.5])) == pytest.approx(0.005, abs=1e-6)
    # a window four ticks long overlaps three others: each counts a quarter
    wide = ExpertMixture(("a", "b"))
    wide.record(0.0, 4.0, np.array([0.9, 0.1]), tick_s=1.0)
    assert wide.resolve(3.0, lambda lo, hi: True) == 0  # still open
    assert wide.resolve(4.0, lambda lo, hi: True) == 1
    assert wide.state_dict()["loss"] == pytest.approx([-0.25 * np.log(0.9), -0.25 * np.log(0.1)])
    restored = ExpertMixture(("a", "b"))
    restored.load_state_dict(wide.state_dict())
    assert restored.weights() == pytest.approx(wide.weights())
    other = ExpertMixture(("x", "y"))
    other.load_state_dict(wide.state_dict())  # other experts: the state does not apply
    assert other.weights() == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="prior"):
        ExpertMixture(("a", "b"), prior=(1.0, 0.0))
    with pytest.raises(ValueError, match="share"):
        ExpertMixture(("a", "b"), share=1.0)
    assert group_prior({"one": 1, "many": 4}) == [0.5, 0.125, 0.125, 0.125, 0.125]


def test_the_policy_warms_a_timer_ahead_of_its_firing_though_the_rate_forecast_is_low() -> None:
    # one call every 5 minutes: the rate forecast of a 10-second step is ~0.03 calls, so
    # the first replica's need must come from the periodic experts, and replace it
    pol = AquatopePrewarmPolicy(forecaster="ewma", miss_price_s=300.0, gaps=False)
    before: list[int] = []
    between: list[int] = []
    for t in range(1, 4 * 3600):
        calls = 1 if t % 300 == 100 else 0
        decision = step(pol, float(t), replicas_ready=0, arrivals=calls, max_replicas=5)
        if t > 3600 and t % 300 == 98:
            before.append(decision.functions["f"].replicas)
        if t > 3600 and t % 300 == 250:
            between.append(decision.functions["f"].replicas)
    assert min(before) == 1  # warm two seconds before every firing
    assert max(between) == 0  # and cold in between


def test_the_policy_follows_a_timer_whose_period_changes_after_its_gap_window_filled() -> None:
    # 100 firings every 75 s, then every 105 s: neither is a calendar period, so each must
    # be learned from the gaps, long after the gap model's window of 64 gaps first filled
    pol = AquatopePrewarmPolicy(forecaster="ewma", miss_price_s=300.0)
    fires = [75 * k for k in range(1, 101)]
    fires += [fires[-1] + 105 * k for k in range(1, 81)]
    learned = {}
    for t in range(1, fires[-1] + 5):
        step(pol, float(t), replicas_ready=0, arrivals=1 if t in fires else 0, max_replicas=3)
        if t in (fires[99], fires[-1]):
            learned[t] = pol._fns["f"].periodic.periods_s
    assert 75.0 in learned[fires[99]]
    assert 105.0 in learned[fires[-1]]  # (the old rule froze the periods at the 64th gap)
