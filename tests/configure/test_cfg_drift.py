"""Change detection used for online re-tuning: the latency's CUSUM, the load's shift test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scheduler.configure.drift import (
    CusumDetector,
    LatencyShiftDetector,
    LoadShiftDetector,
    TickWindows,
)


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


WINDOW_S = 30.0


def _load(
    rng: np.random.Generator, n: int, scale: float = 1.0, *, bursts: bool = True, offset: int = 0
) -> np.ndarray:
    """Arrivals per 30 s window: 1/s of Poisson background, and (``bursts``) 120 more calls
    in every sixth window, every rate times ``scale``."""
    counts = rng.poisson(30 * scale, n)
    if bursts:
        burst = (np.arange(n) + offset) % 6 == 2
        counts[burst] += rng.poisson(120 * scale, int(burst.sum()))
    return counts


def _watching(reference: np.ndarray) -> LoadShiftDetector:
    det = LoadShiftDetector()
    det.prime([(float(n), WINDOW_S) for n in reference])
    assert det.ready
    return det


def _first_alarm(det: LoadShiftDetector, counts: np.ndarray) -> int | None:
    """1-based index of the first window that alarms (None: none did)."""
    return next((i + 1 for i, n in enumerate(counts) if det.update(float(n), WINDOW_S)), None)


@pytest.mark.parametrize("seed", range(5))
def test_load_shift_ignores_the_bursts_its_reference_held_and_follows_a_doubling_or_halving(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    reference = _load(rng, 15)  # a tuning episode: 7.5 minutes, two or three bursts
    det = _watching(reference)
    assert _first_alarm(det, _load(rng, 600, offset=15)) is None  # 5 hours of the same
    # a mean and a spread of the same windows (the latency's CUSUM) take 9-18 minutes here
    state = det.state_dict()
    doubled = _first_alarm(det, _load(rng, 40, 2.0, offset=615))
    assert doubled is not None and doubled <= 6
    det.load_state_dict(state)
    halved = _first_alarm(det, _load(rng, 40, 0.5, offset=615))
    assert halved is not None and halved <= 8


@pytest.mark.parametrize("seed", range(5))
def test_load_shift_on_a_steady_poisson_load_does_not_alarm_on_its_reference_noise(
    seed: int,
) -> None:
    # fifteen windows estimate a mean and spread poorly: a CUSUM standardised by them
    # alarmed 5-20 times in these 8 hours on four of the five seeds
    rng = np.random.default_rng(seed)
    det = _watching(_load(rng, 15, bursts=False))
    assert _first_alarm(det, _load(rng, 960, bursts=False)) is None


def test_one_flash_of_traffic_is_not_a_shift_and_a_restored_detector_goes_on_alike() -> None:
    rng = np.random.default_rng(7)
    det = _watching(_load(rng, 15, bursts=False))
    assert not det.update(30.0 * 20, WINDOW_S)  # twenty times the load, for one window
    assert not det.update(30.0 * 20, WINDOW_S)  # and a second: each adds at most 4 nats
    assert 7.9 < det.high <= 8.0
    clone = LoadShiftDetector()
    clone.load_state_dict(json.loads(json.dumps(det.state_dict())))
    assert clone.high == det.high and clone.ready
    assert det.update(600.0, WINDOW_S) and clone.update(600.0, WINDOW_S)  # the third
    # a reference of rates alone (a state from before the pairs) is learned again
    old = LoadShiftDetector()
    old.load_state_dict({"ref": [0.7, 0.8, 0.7, 0.9], "high": 3.0, "low": 0.0})
    assert not old.ready and not old.update(30.0, WINDOW_S)


def test_a_quiet_reference_grows_until_enough_arrivals_stand_behind_it() -> None:
    det = LoadShiftDetector(reference=4, min_arrivals=50)
    det.prime([(2.0, WINDOW_S)] * 15)  # 30 arrivals: a rate known to a fifth, not enough
    assert not det.ready
    for _ in range(9):
        assert not det.update(2.0, WINDOW_S)
    assert not det.ready and not det.update(2.0, WINDOW_S)  # the 50th arrival completes it
    assert det.ready
    with pytest.raises(ValueError, match="factor > 1"):
        LoadShiftDetector(factor=1.0)
    with pytest.raises(ValueError, match="min_arrivals"):
        LoadShiftDetector(min_arrivals=-1)


@pytest.mark.parametrize("seed", range(3))
def test_latency_shift_takes_bursts_it_never_saw_in_stride_and_follows_a_slowdown(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)

    def tails(n: int, scale: float = 1.0, bursts: bool = True) -> np.ndarray:
        """Windows' tails around 0.4 s (10 % noise); every sixth 3x (a burst)."""
        out = 0.4 * scale * np.exp(rng.normal(0.0, 0.1, n))
        if bursts:
            out[np.arange(n) % 6 == 5] *= 3.0
        return out

    det = LatencyShiftDetector(reference=4)
    det.prime(tails(4, bursts=False).tolist())  # the kept configuration's first 2 minutes
    assert det.ready
    assert not any(det.update(float(x)) for x in tails(600))  # 5 hours, 100 bursts
    state = json.loads(json.dumps(det.state_dict()))
    # windows that came with no evidence pending joined the reference, bursts among them
    ref = np.exp(state["ref_log_s"])
    assert len(ref) == det.max_reference == 30 and ref.max() > 1.0
    slower = next(i + 1 for i, x in enumerate(tails(20, 1.6)) if det.update(float(x)))
    assert slower <= 5
    det.load_state_dict(state)
    faster = next(i + 1 for i, x in enumerate(tails(20, 0.55)) if det.update(float(x)))
    assert faster <= 5
    # a state from before the kernel density (a CUSUM's reference) starts again
    old = LatencyShiftDetector(reference=4)
    old.load_state_dict({"ref": [-0.9, -0.9, -0.8, -0.9], "high": 1.0, "low": 0.0})
    assert not old.ready and not old.update(0.4) and not old.update(float("nan"))
    with pytest.raises(ValueError, match="factor > 1"):
        LatencyShiftDetector(factor=0.5)
