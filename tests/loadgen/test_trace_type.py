"""The Trace type: validation, selection, compression, rate scaling, statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadgen.trace import FunctionInfo, Trace
from testbed.core.errors import ConfigError


def _trace() -> Trace:
    return Trace(
        {"a": np.arange(0, 60, 0.5), "b": np.array([1.0, 50.0]), "c": np.array([])},
        60.0,
        {"a": FunctionInfo(trigger="http"), "b": FunctionInfo(trigger="timer")},
    )


def test_rejects_arrivals_outside_window() -> None:
    with pytest.raises(ConfigError, match="arrivals must lie"):
        Trace({"a": np.array([0.0, 60.0])}, 60.0)
    with pytest.raises(ConfigError, match="duration"):
        Trace({}, 0.0)


def test_unsorted_input_is_sorted_and_frozen() -> None:
    tr = Trace({"a": [3.0, 1.0, 2.0]}, 10.0)
    assert tr.arrivals_s["a"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        tr.arrivals_s["a"][0] = 5.0


def test_selection_by_rank_sample_and_trigger() -> None:
    tr = _trace()
    assert tr.by_rate() == ["a", "b", "c"]
    assert tr.top(2).functions == ("a", "b")
    assert tr.with_triggers(["timer"]).functions == ("b",)
    picked = tr.sample(2, seed=3)
    assert len(picked.functions) == 2 and picked.functions == tr.sample(2, seed=3).functions
    with pytest.raises(ConfigError, match="no function"):
        tr.select(["zzz"])


def test_compress_and_window() -> None:
    tr = _trace().compress(6.0)
    assert tr.duration_s == pytest.approx(10.0)
    assert tr.rate_per_s("a") == pytest.approx(120 / 10.0)
    w = _trace().window(30.0, 60.0)
    assert w.duration_s == 30.0 and w.arrivals_s["b"].tolist() == [20.0]


@pytest.mark.parametrize("factor", [0.25, 3.5])
def test_scale_rate_hits_target_count(factor: float) -> None:
    # a rate ramp (density grows linearly over 100 s), so there is a shape to keep
    ramp = 100.0 * np.sqrt(np.random.default_rng(0).random(20_000))
    base = Trace({"a": np.sort(ramp)}, 100.0)
    scaled = base.scale_rate(factor, seed=1)
    n = scaled.arrivals_s["a"].size
    assert abs(n - factor * 20_000) < 5 * math.sqrt(factor * 20_000)
    # the shape survives at one-second resolution
    before = base.binned(1.0)["a"] * factor
    after = scaled.binned(1.0)["a"]
    assert np.corrcoef(before, after)[0, 1] > 0.95
    if factor > 1:  # every original arrival is kept; extras rounded per bin
        assert np.isin(base.arrivals_s["a"], scaled.arrivals_s["a"]).all()
        assert np.abs(after - before).max() < 1.0
    else:  # thinning: the kept arrivals are originals, at their exact times
        assert np.isin(scaled.arrivals_s["a"], base.arrivals_s["a"]).all()


def test_summary_idle_times_and_cv() -> None:
    tr = Trace(
        {
            "periodic": np.arange(0, 100, 2.0),
            "poisson": np.cumsum(np.random.default_rng(0).exponential(0.1, 900)),
        },
        100.0,
    )
    rows = {r.name: r for r in tr.summary()}
    assert rows["periodic"].idle_p50_s == pytest.approx(2.0)
    assert rows["periodic"].cv == pytest.approx(0.0, abs=1e-9)
    assert rows["poisson"].cv == pytest.approx(1.0, abs=0.1)
    assert rows["periodic"].rate_per_min == pytest.approx(30.0)
