"""CUSUM change detection used for online re-tuning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.configure.drift import CusumDetector, TickWindows


def test_no_alarm_on_stationary_noise_and_alarm_on_a_step() -> None:
    rng = np.random.default_rng(0)
    det = CusumDetector(reference=20, threshold=8.0)
    assert not any(det.update(float(x)) for x in rng.normal(1.0, 0.1, 500))
    alarms = [det.update(float(x)) for x in rng.normal(1.6, 0.1, 20)]
    assert any(alarms) and alarms.index(True) < 5


def test_detects_a_drop_too_and_restores_state() -> None:
    det = CusumDetector(reference=5, threshold=4.0)
    for x in [2.0, 2.1, 1.9, 2.0, 2.05]:
        det.update(x)
    clone = CusumDetector(reference=5, threshold=4.0)
    clone.load_state_dict(det.state_dict())
    assert clone.mean == det.mean
    assert any(clone.update(1.0) for _ in range(5))


def test_a_primed_reference_watches_at_once_and_a_short_one_completes_itself() -> None:
    det = CusumDetector(reference=4, drift=0.5, threshold=4.0)
    det.prime([1.0, 1.2, 0.8, 1.0, float("nan")])  # the nan is dropped
    assert det.ready and det.mean == 1.0 and det.std > 0.05
    assert any(det.update(3.0) for _ in range(3))
    det.prime([1.0, 1.1])  # two of four: the next two observations complete it
    assert not det.ready and not det.update(0.9)
    assert not det.update(1.0) and det.ready and det.mean == 1.0


def test_tick_windows_sum_ticks_and_take_the_tail_of_their_requests() -> None:
    windows = TickWindows(3)
    assert windows.add(arrivals=4, duration_s=1.0, e2e_s=(0.1, 0.2), estimate_s=0.5) is None
    assert windows.add(arrivals=2, duration_s=1.0, e2e_s=(), estimate_s=0.7) is None
    state = windows.state_dict()
    closed = windows.add(arrivals=0, duration_s=2.0, e2e_s=(0.3, 0.4), estimate_s=math.nan)
    assert closed is not None and closed.rate == 6 / 4.0 and closed.e2e
    assert closed.latencies_s == (0.1, 0.2, 0.3, 0.4)  # requests' latencies win over estimates
    assert closed.latency(50.0) == 0.25
    # a restart mid-window closes the same window
    clone = TickWindows(3)
    clone.load_state_dict(state)
    again = clone.add(arrivals=0, duration_s=2.0, e2e_s=(0.3, 0.4), estimate_s=math.nan)
    assert again == closed
    # a window of estimates only: their median, whatever the percentile asked
    for est in (0.5, 0.9, 0.6):
        last = windows.add(arrivals=1, duration_s=1.0, e2e_s=(), estimate_s=est)
    assert last is not None and not last.e2e and last.latency(99.0) == 0.6
    with pytest.raises(ValueError, match="ticks must be >= 1"):
        TickWindows(0)
