"""The periodic experts' numbers against a brute-force reading of their definition, and the
activity log's and period learner's edge cases (window and cut boundaries, caps, ticks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.forecast.phase import CALENDAR_PERIODS_S, ActivityLog, PeriodicExperts
from tests.forecast.test_forecast_phase import _log


def _brute_force(
    active: set[int], origin: float, now: float, h: float, experts: PeriodicExperts
) -> tuple[list[float], list[int]]:
    """Each expert's probability and windows read, straight from the module docstring."""

    def read(windows: list[tuple[float, float]]) -> tuple[int, int]:
        inside = [(lo, hi) for lo, hi in windows if lo >= origin - 1e-9]
        hits = sum(any(lo < t <= hi for t in active) for lo, hi in inside)
        return hits, len(inside)

    base_windows = [(now - j * h, now - (j - 1) * h) for j in range(1, experts.base_windows + 1)]
    hits, used = read(base_windows)
    base = (hits + 0.5) / (used + 1.0)
    probs, cycles = [base], [used]
    for alpha in experts.alphas:  # every width and period once per shrinkage
        for tol in experts.tols_s:  # widest first, every period once per width
            for period in experts.periods_s:
                if period <= 0:  # an empty learned slot: no history, the base rate
                    probs.append(base)
                    cycles.append(0)
                    continue
                k_max = int(min(max(math.floor(experts.window_s / period), 2), experts.max_cycles))
                lags = [k * period for k in range(1, k_max + 1)]
                windows = [(now - lag - tol, now - lag + h + tol) for lag in lags]
                hits, used = read(windows)
                probs.append((hits + alpha * base) / (used + alpha))
                cycles.append(used)
    return probs, cycles


@pytest.mark.parametrize(
    ("seed", "log_span_s", "tol_s", "alpha"),
    [
        (0, 900.0, 1.0, 2.0),
        (1, 900.0, 1.0, 2.0),
        (2, 1e9, 1.0, 2.0),
        (3, 900.0, (0.0, 1.0), 2.0),
        (4, 1e9, (2.0, 0.5), 2.0),
        (5, 900.0, (0.0, 1.0), (2.0, 0.1)),
        (6, 1e9, 1.0, (0.5, 3.0, 0.5)),
    ],
)
def test_predict_is_the_definition_read_by_brute_force(
    seed: int,
    log_span_s: float,
    tol_s: float | tuple[float, ...],
    alpha: float | tuple[float, ...],
) -> None:
    rng = np.random.default_rng(seed)
    # a 45 s timer at phase 7, thinned, plus noise; history shorter than the longest reads
    active = {t for t in range(7, 1400, 45) if rng.random() < 0.7}
    active |= {int(t) for t in rng.integers(1, 1400, 25)}
    log = _log(active, 1400, span_s=log_span_s)
    origin = max(0.0, 1400.0 - log_span_s)
    assert log.origin_s == origin
    experts = PeriodicExperts(
        periods_s=(1.0, 30.0, 60.0, 400.0),
        learned=2,
        span_s=600.0,  # 20, 10 and (clamped up) 2 cycles ...
        max_cycles=15,  # ... and 30 s clamped down to 15
        base_windows=40,
        alpha=alpha,
        tol_s=tol_s,
    )
    experts.learn_periods([45.0] * 5, tick_s=1.0)
    assert experts.periods_s == (1.0, 30.0, 60.0, 400.0, 45.0, 0.0)
    kept = {t for t in active if t > origin}
    # two horizons in turn: each must get its own layout, not the other's cached one
    for now, h in [(1400.0, 3.0), (1400.0, 10.0), (1401.0, 3.0), (1439.0, 5.0)]:
        probs, cycles = experts.predict(log, now_s=now, horizon_s=h)
        want_p, want_c = _brute_force(kept, origin, now, h, experts)
        assert probs.tolist() == pytest.approx(want_p, abs=1e-12)
        assert cycles.tolist() == want_c
        assert cycles.dtype == np.int64
    # the clamps were exercised: 1 s and 30 s capped at 15 cycles, 400 s raised to 2 (all
    # inside the history at the last query)
    assert want_c[1:5] == [15, 15, 10, 2]
    assert len(probs) == len(experts.names) == 1 + 6 * len(experts.tols_s) * len(experts.alphas)
    assert len(set(experts.names)) == len(experts.names)


def test_windows_starting_exactly_at_the_origin_count() -> None:
    log = _log({5, 15}, 20)  # origin 0
    experts = PeriodicExperts(periods_s=(10.0,), learned=0, base_windows=4, tol_s=0.0, span_s=20.0)
    probs, cycles = experts.predict(log, now_s=20.0, horizon_s=5.0)
    # base windows (15,20], (10,15], (5,10], (0,5]: all inside, two with a call
    assert cycles.tolist() == [4, 2] and probs[0] == pytest.approx(2.5 / 5.0)
    # period 10: (10,15] and (0,5] both start inside the history; both hit
    assert probs[1] == pytest.approx((2 + 0.5) / 3)
    # a window starting 0.8 s before the origin is not inside it
    probs, cycles = experts.predict(log, now_s=20.0, horizon_s=5.2)
    assert cycles[0] == 3


def test_no_history_predicts_zero_with_a_count_per_expert() -> None:
    experts = PeriodicExperts(learned=1)
    probs, cycles = experts.predict(ActivityLog(span_s=10.0), now_s=5.0, horizon_s=1.0)
    n = 1 + len(CALENDAR_PERIODS_S) + 1
    assert probs.shape == (n,) and cycles.shape == (n,) and cycles.dtype == np.int64
    assert not probs.any() and not cycles.any()


def test_documented_defaults() -> None:
    experts = PeriodicExperts()
    assert experts.calendar == CALENDAR_PERIODS_S
    assert (experts.learned, experts.window_s, experts.max_cycles) == (2, 7200.0, 120)
    assert (experts.base_windows, experts.alphas, experts.tol_s) == (256, (1.0,), 1.0)
    assert experts.min_gap_count == 3
    assert experts.periods_s[-2:] == (0.0, 0.0)  # learned slots start empty
    assert ActivityLog(span_s=1.0).max_runs == 2048


@pytest.mark.parametrize(
    "kwargs",
    [
        {"periods_s": ()},
        {"periods_s": (0.0,)},
        {"periods_s": (60.0, -1.0)},
        {"learned": -1},
        {"max_cycles": 1},
        {"span_s": 0.0},
        {"base_windows": 0},
        {"alpha": 0.0},
        {"tol_s": -0.5},
        {"min_gap_count": 0},
    ],
)
def test_bad_expert_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"must be|>="):
        PeriodicExperts(**kwargs)  # type: ignore[arg-type]


def test_boundary_expert_settings_are_accepted() -> None:
    experts = PeriodicExperts(
        periods_s=(0.5,),
        learned=0,
        max_cycles=2,
        span_s=0.5,
        base_windows=1,
        alpha=0.01,
        tol_s=0.0,
        min_gap_count=1,
    )
    assert experts.periods_s == (0.5,)
    assert ActivityLog(span_s=0.5, max_runs=1).max_runs == 1
    for bad in ({"span_s": 0.0}, {"span_s": 1.0, "max_runs": 0}):
        with pytest.raises(ValueError, match="span_s"):
            ActivityLog(**bad)  # type: ignore[arg-type]


def test_gaps_become_periods_at_tick_resolution_off_the_calendar() -> None:
    def learned(
        gaps: list[float], tick_s: float = 1.0, experts: PeriodicExperts | None = None
    ) -> tuple[float, ...]:
        experts = experts or PeriodicExperts()
        experts.learn_periods(gaps, tick_s=tick_s)
        return experts.periods_s[-2:]

    assert learned([75.0] * 3) == (75.0, 0.0)  # exactly min_gap_count times
    assert learned([75.0] * 2) == (0.0, 0.0)
    assert learned([2.0] * 9 + [75.0] * 3) == (75.0, 0.0)  # two ticks: not an idle gap
    assert learned([3.0] * 5 + [75.0] * 3) == (3.0, 75.0)  # three ticks: one
    assert learned([60.0] * 9 + [62.0] * 9 + [75.0] * 3) == (75.0, 0.0)  # on the calendar
    assert learned([63.0] * 4 + [75.0] * 3) == (63.0, 75.0)  # just off it
    assert learned([75.4] * 3, tick_s=2.0) == (76.0, 0.0)  # rounded to the tick
    assert learned([3.0] * 5, tick_s=2.0) == (0.0, 0.0)  # 4 s: two ticks of 2 s


def test_a_learned_slot_keeps_its_period_while_it_recurs() -> None:
    experts = PeriodicExperts(learned=3)
    experts.learn_periods([75.0] * 3, tick_s=1.0)
    experts.learn_periods([100.0] * 5 + [75.0] * 3, tick_s=1.0)
    assert experts.periods_s[-3:] == (75.0, 100.0, 0.0)  # 75 keeps its slot though second
    experts.learn_periods([77.0] * 5 + [100.0] * 4, tick_s=1.0)
    assert experts.periods_s[-3:] == (75.0, 100.0, 0.0)  # 77 is 75 within the tolerance
    experts.learn_periods([100.0] * 5 + [130.0] * 4, tick_s=1.0)
    assert experts.periods_s[-3:] == (100.0, 130.0, 0.0)  # 75 stopped recurring


def test_learned_periods_restore_padded_to_the_slots() -> None:
    experts = PeriodicExperts(learned=3)
    experts.load_state_dict({"learned": [75.0]})
    assert experts.periods_s[-3:] == (75.0, 0.0, 0.0)
    experts.load_state_dict({})
    assert experts.periods_s[-3:] == (0.0, 0.0, 0.0)


def test_activity_runs_merge_only_consecutive_ticks() -> None:
    log = _log({10, 11, 13, 20}, 25)
    assert log.runs == [(10.0, 11.0), (13.0, 13.0), (20.0, 20.0)]
    fresh = ActivityLog(span_s=1e9)
    fresh.observe(5.0, active=False, tick_s=1.0)
    assert fresh.origin_s == 4.0  # the first tick covers (4, 5]
    coarse = ActivityLog(span_s=1e9)
    for t in (2.0, 4.0, 6.0, 10.0):  # ticks of 2 s: 2, 4 and 6 are consecutive, 10 is not
        coarse.observe(t, active=True, tick_s=2.0)
    assert coarse.runs == [(2.0, 6.0), (10.0, 10.0)]


def test_any_active_window_boundaries() -> None:
    log = _log({10}, 30)
    assert log.any_active(9.0, 10.0)  # the only run is the first: found
    assert not log.any_active(10.0, 12.0)  # a run ending at the window's open end is outside
    assert log.active_in(np.array([9.0, 10.0]), np.array([10.0, 12.0])).tolist() == [True, False]
    empty = ActivityLog(span_s=1e9)
    got = empty.active_in(np.array([1.0, 2.0]), np.array([2.0, 3.0]))
    assert got.shape == (2,) and not got.any()


def test_the_cut_drops_every_run_behind_it_at_once_and_the_cap_after_it() -> None:
    log = ActivityLog(span_s=200.0)
    log.load_state_dict({"starts": [10.0, 20.0, 30.0, 500.0], "ends": [10.0, 20.0, 30.0, 500.0]})
    log.observe(600.0, active=False, tick_s=1.0)
    assert log.runs == [(500.0, 500.0)]
    edge = ActivityLog(span_s=100.0)
    edge.load_state_dict({"starts": [10.0], "ends": [10.0], "origin_s": 0.0})
    edge.observe(110.0, active=False, tick_s=1.0)  # cut at 110 - 100: a run ending there stays
    assert edge.runs == [(10.0, 10.0)]
    capped = ActivityLog(span_s=200.0, max_runs=2)
    runs = [10.0, 20.0, 450.0, 460.0, 470.0]
    capped.load_state_dict({"starts": runs, "ends": runs, "origin_s": 0.0})
    capped.observe(600.0, active=False, tick_s=1.0)  # two behind the cut, one over the cap
    assert capped.runs == [(460.0, 460.0), (470.0, 470.0)]
    assert capped.origin_s == 459.0
    both = ActivityLog(span_s=200.0, max_runs=2)
    runs = [10.0, 450.0, 460.0, 470.0]
    both.load_state_dict({"starts": runs, "ends": runs, "origin_s": 0.0})
    both.observe(600.0, active=False, tick_s=1.0)  # one behind the cut, one over the cap
    assert both.runs == [(460.0, 460.0), (470.0, 470.0)]


def test_activity_state_keeps_an_unknown_origin_and_refuses_torn_runs() -> None:
    log = ActivityLog(span_s=10.0)
    log.load_state_dict(ActivityLog(span_s=10.0).state_dict())
    assert log.origin_s is None and log.runs == []
    log.load_state_dict({})
    assert log.origin_s is None and log.runs == []
    busy = _log({3, 8}, 10)
    busy.active_in(np.array([0.0]), np.array([10.0]))  # arrays cached ...
    busy.load_state_dict({"starts": [5.0], "ends": [5.0], "origin_s": 0.0})
    # ... and dropped on a load: queries read the loaded runs
    assert busy.active_in(np.array([2.0, 4.0]), np.array([3.0, 5.0])).tolist() == [False, True]
    with pytest.raises(ValueError, match="differ in length"):
        log.load_state_dict({"starts": [1.0, 2.0], "ends": [1.0]})


def test_two_widths_name_each_expert_by_its_width_widest_first() -> None:
    experts = PeriodicExperts(periods_s=(60.0,), learned=1, tol_s=(0.0, 1.0))
    assert experts.tols_s == (1.0, 0.0) and experts.tol_s == 1.0
    assert experts.names == (
        "base",
        "period-60s~1s",
        "learned-0~1s",
        "period-60s~0s",
        "learned-0~0s",
    )
    assert PeriodicExperts(periods_s=(60.0,), learned=0, tol_s=(1.0, 1.0)).names == (
        "base",
        "period-60s",
    )
    with pytest.raises(ValueError, match="tol_s"):
        PeriodicExperts(tol_s=())
    with pytest.raises(ValueError, match="tol_s"):
        PeriodicExperts(tol_s=(0.0, -1.0))


def test_the_exact_width_tells_a_windows_edge_from_its_inside() -> None:
    # a call at second 30 of every minute: one tick before the window opens, the widened
    # expert has seen a call in each of its past windows, the exact one in none
    log = _log({t for t in range(1, 1201) if t % 60 == 30}, 1200)
    experts = PeriodicExperts(periods_s=(60.0,), learned=0, tol_s=(0.0, 1.0))
    probs, _ = experts.predict(log, now_s=1227.0, horizon_s=2.0)  # (1227, 1229]
    base, widened, exact = probs.tolist()
    assert widened > 0.9 and exact < 0.1 and exact < base
    probs, _ = experts.predict(log, now_s=1228.0, horizon_s=2.0)  # (1228, 1230]: the call
    assert probs[1] > 0.9 and probs[2] > 0.9


def _twin_logs(span_s: float) -> tuple[ActivityLog, ActivityLog]:
    """Two logs of the same span: the first keeps tick counts, the second only its runs."""
    counted, runs_only = ActivityLog(span_s=span_s), ActivityLog(span_s=span_s)
    runs_only._grid_off = True  # the binary searches the counts stand in for
    return counted, runs_only


def test_tick_counts_answer_as_the_runs_do_through_compaction_and_a_restart() -> None:
    rng = np.random.default_rng(11)
    experts = PeriodicExperts(periods_s=(30.0, 60.0, 90.0), span_s=300.0, base_windows=50)
    counted, runs_only = _twin_logs(experts.history_s)  # a buffer of ~2 x 390 ticks
    active = set(range(45, 3000, 60)) | {int(t) for t in rng.integers(1, 3000, 400)}
    checked = 0
    for t in range(1, 3001):
        for log in (counted, runs_only):
            log.observe(float(t), active=t in active, tick_s=1.0)
        if t == 1500:  # a restart: the counts are rebuilt from the runs of the saved state
            saved = counted.state_dict()
            counted = ActivityLog(span_s=experts.history_s)
            counted.load_state_dict(saved)
        if t % 7 == 0 and t != 1500:
            horizon = float(rng.uniform(1.0, 6.0))
            assert counted.grid_reader(float(t), horizon) is not None
            got, got_cycles = experts.predict(counted, now_s=float(t), horizon_s=horizon)
            want, want_cycles = experts.predict(runs_only, now_s=float(t), horizon_s=horizon)
            assert got.tolist() == want.tolist() and got_cycles.tolist() == want_cycles.tolist()
            lo = float(t) - rng.uniform(0.0, experts.history_s - 10.0)
            hi = lo + rng.uniform(1.0, 20.0)
            assert counted.any_active(lo, hi) == runs_only.any_active(lo, hi)
            checked += 1
    assert checked > 400
    assert counted._grid is not None and counted._grid.base > 0  # compacted on the way


def test_tick_counts_step_aside_for_irregular_ticks_narrow_windows_and_long_spans() -> None:
    log = ActivityLog(span_s=600.0)
    for t in range(1, 101):
        log.observe(float(t), active=t % 10 == 0, tick_s=1.0)
    assert log.grid_reader(100.0, 2.0) is not None
    assert log.grid_reader(100.0, 0.5) is None  # a window narrower than a tick: runs only
    assert log.grid_reader(99.0, 2.0) is None  # not the latest tick
    assert log.any_active(99.2, 99.8) is False and log.any_active(89.5, 90.0) is True
    log.observe(101.37, active=True, tick_s=1.0)  # off the grid: the runs answer from now on
    assert log.grid_reader(101.37, 2.0) is None
    assert log.any_active(101.0, 102.0) and not log.any_active(91.0, 99.0)
    assert ActivityLog(span_s=1e9).grid_reader(0.0, 5.0) is None  # too many ticks to count
    skipped = ActivityLog(span_s=600.0)
    for t in (1.0, 2.0, 5.0, 6.0, 2000.0):  # missed ticks, then a jump over the whole buffer
        skipped.observe(t, active=True, tick_s=1.0)
    reader = skipped.grid_reader(2000.0, 1.0)
    assert reader is not None
    assert skipped.any_active(4.0, 5.0) is False  # (forgotten: older than the span)
    assert skipped.any_active(1999.0, 2000.0) and not skipped.any_active(1000.0, 1999.0)
