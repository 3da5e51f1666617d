"""Synthetic generators reproduce their target statistics, for several seeds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from loadgen.traces import read_azure2019_counts, synthesize, write_azure2019
from loadgen.traces.synthetic import AZURE_TRIGGER_SHARES, AzureLikeParams
from testbed.core.errors import ConfigError

SEEDS = [0, 1, 2, 3]


def test_same_seed_same_trace_and_format_round_trip(tmp_path: Path) -> None:
    a = synthesize("bursty", functions=3, minutes=30, seed=7)
    b = synthesize("bursty", functions=3, minutes=30, seed=7)
    c = synthesize("bursty", functions=3, minutes=30, seed=8)
    assert a.names == b.names and np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    write_azure2019(a, tmp_path / "t.csv")
    back = read_azure2019_counts(tmp_path / "t.csv")
    assert back.names == a.names and np.array_equal(back.counts, a.counts)


def test_unknown_kind_and_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="unknown trace kind"):
        synthesize("weird", functions=1, minutes=1, seed=0)
    with pytest.raises(ConfigError):
        synthesize("bursty", functions=0, minutes=1, seed=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_bursty_is_on_off(seed: int) -> None:
    c = synthesize(
        "bursty", functions=6, minutes=1440, seed=seed, rate_per_min=60.0, on_min=5.0, off_min=15.0
    )
    per_min = c.counts.astype(float)
    assert per_min.mean() == pytest.approx(60.0, rel=0.15)
    dispersion = per_min.var(axis=1) / per_min.mean(axis=1)
    assert (dispersion > 20).all()  # Poisson would be ~1
    idle = (per_min == 0).mean()  # off periods: about 3/4 of the time, minus partial minutes
    assert 0.55 < idle < 0.8


@pytest.mark.parametrize("seed", SEEDS)
def test_diurnal_amplitude_and_peak(seed: int) -> None:
    c = synthesize(
        "diurnal",
        functions=4,
        minutes=1440,
        seed=seed,
        rate_per_min=50.0,
        amplitude=0.6,
        peak_minute=840.0,
    )
    total = c.counts.sum(axis=0).astype(float)
    t = np.arange(total.size) + 0.5
    x = np.column_stack(
        [np.ones_like(t), np.cos(2 * np.pi * t / 1440), np.sin(2 * np.pi * t / 1440)]
    )
    coef = np.linalg.lstsq(x, total, rcond=None)[0]
    assert coef[0] == pytest.approx(200.0, rel=0.03)
    assert np.hypot(coef[1], coef[2]) / coef[0] == pytest.approx(0.6, abs=0.05)
    peak = (np.degrees(np.arctan2(coef[2], coef[1])) % 360) / 360 * 1440
    assert abs(peak - 840.0) < 30


@pytest.mark.parametrize("seed", SEEDS)
def test_flash_crowd_surges_then_decays(seed: int) -> None:
    c = synthesize(
        "flash-crowd",
        functions=2,
        minutes=300,
        seed=seed,
        rate_per_min=30.0,
        surge=10.0,
        start_minute=100,
        decay_min=20.0,
    )
    total = c.counts.sum(axis=0) / 2.0
    assert total[:100].mean() == pytest.approx(30.0, rel=0.1)
    assert total[100] == pytest.approx(300.0, rel=0.2)
    assert total[200:].mean() < 1.2 * 30.0


def _app_rates(c) -> np.ndarray:  # type: ignore[no-untyped-def]
    per_app: Counter[str] = Counter()
    for name, total in zip(c.names, c.totals(), strict=True):
        per_app[c.info[name].app] += int(total)
    return np.asarray(list(per_app.values()), dtype=float) / c.minutes


@pytest.mark.parametrize("seed", SEEDS)
def test_azure_like_matches_published_facts(seed: int) -> None:
    c = synthesize("azure-like", functions=1000, minutes=1440, seed=seed)
    apps = _app_rates(c)
    assert (apps <= 1 / 60).mean() == pytest.approx(0.45, abs=0.07)  # <= once per hour
    assert (apps <= 1).mean() == pytest.approx(0.81, abs=0.07)  # <= once per minute
    totals = c.totals()
    trig = np.array([c.info[n].trigger for n in c.names])
    for t, (f_share, i_share) in AZURE_TRIGGER_SHARES.items():
        assert (trig == t).mean() == pytest.approx(f_share, abs=0.01)
        tol = 0.07 if i_share > 0.1 else 0.01
        assert totals[trig == t].sum() / totals.sum() == pytest.approx(i_share, abs=tol)
    sizes = np.asarray(list(Counter(c.info[n].app for n in c.names).values()))
    assert (sizes == 1).mean() == pytest.approx(0.54, abs=0.08)
    assert (sizes >= 11).mean() == pytest.approx(0.05, abs=0.04)
    rates = totals[totals > 0] / c.minutes
    assert rates.max() / rates.min() > 1e5  # one day shows 5+ of the ~8 decades
    durations = np.array([c.info[n].avg_duration_s for n in c.names])
    assert (durations < 1.0).mean() == pytest.approx(0.5, abs=0.07)
    hourly = c.counts[trig != "timer"].sum(axis=0).reshape(24, 60).sum(axis=1)
    assert hourly.max() / hourly.min() > 1.3  # a daily cycle
    for i in np.flatnonzero(trig == "timer"):  # strictly periodic
        busy = np.flatnonzero(c.counts[i])
        if busy.size >= 3 and c.counts[i].max() == 1:
            gaps = set(np.diff(busy).tolist())
            assert max(gaps) - min(gaps) <= 1, gaps


def test_azure_like_rate_parameters_span_eight_decades() -> None:
    p = AzureLikeParams()
    assert p.log10_rate_max - p.log10_rate_min == pytest.approx(8.0)


def test_timers_fire_on_their_own_period_and_phase() -> None:
    trace = synthesize("timers", functions=5, minutes=120, seed=4, period_min=(3, 7))
    assert {i.trigger for i in trace.info.values()} == {"timer"}
    for row in trace.counts:
        fires = np.flatnonzero(row)
        gaps = set(np.diff(fires).tolist())
        assert len(gaps) == 1 and 3 <= gaps.pop() <= 7
        assert fires[0] < 7 and set(row[fires].tolist()) == {1}
    with pytest.raises(ConfigError, match="timers"):
        synthesize("timers", functions=1, minutes=10, seed=0, period_min=(0, 3))


@pytest.mark.parametrize("seed", SEEDS)
def test_poisson_is_memoryless_at_its_rate(seed: int) -> None:
    c = synthesize("poisson", functions=4, minutes=2000, seed=seed, rate_per_min=0.5)
    assert c.counts.shape == (4, 2000)
    assert c.counts.mean() == pytest.approx(0.5, rel=0.06)
    # Poisson counts: variance equal to the mean, and no memory from one minute to the next
    assert c.counts.var() == pytest.approx(c.counts.mean(), rel=0.12)
    flat = c.counts.astype(float)
    lag1 = np.mean([np.corrcoef(row[:-1], row[1:])[0, 1] for row in flat])
    assert abs(lag1) < 0.05
    again = synthesize("poisson", functions=4, minutes=2000, seed=seed, rate_per_min=0.5)
    assert np.array_equal(c.counts, again.counts)
    with pytest.raises(ConfigError, match="rate_per_min"):
        synthesize("poisson", functions=1, minutes=10, seed=seed, rate_per_min=0.0)
