"""CUSUM change detection used for online re-tuning."""

from __future__ import annotations

import numpy as np

from scheduler.configure.drift import CusumDetector


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
