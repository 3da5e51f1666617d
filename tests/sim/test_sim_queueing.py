"""Queueing sanity: the simulator's mean waits match M/M/1 and M/M/c closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from testbed.core.platform import FunctionSpec
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from tests.sim.sim_helpers import make_profile


def _erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean queueing delay Wq of an M/M/c queue (Erlang C)."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def _run_poisson(lam: float, servers: int, n: int, seed: int) -> np.ndarray:
    profile = make_profile(["f"], service=Distribution.exponential(1.0))
    sim = SimPlatform(profile, seed=seed)
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=servers)
    sim.run_until(5.0)  # replicas are ready after the 1 s cold start
    assert sim.status("f").replicas_ready == servers
    times = 5.0 + np.cumsum(np.random.default_rng(seed).exponential(1 / lam, n))
    results = sim.run_trace({"f": times}, float(times[-1]) + 1, tick_s=50.0)
    requests = results.requests
    assert len(requests) == n and requests["ok"].all() and not requests["cold_start"].any()
    return requests["latency_s"].to_numpy()


@pytest.mark.slow
def test_mm1_mean_wait_matches_closed_form() -> None:
    lam, mu = 0.5, 1.0
    latency = _run_poisson(lam, servers=1, n=150_000, seed=3)
    sojourn = 1 / (mu - lam)  # W = 2 s
    assert latency.mean() == pytest.approx(sojourn, rel=0.03)
    assert latency.mean() - 1 / mu == pytest.approx(sojourn - 1 / mu, rel=0.05)


@pytest.mark.slow
def test_mmc_mean_wait_matches_erlang_c() -> None:
    lam, mu, c = 2.1, 1.0, 3
    latency = _run_poisson(lam, servers=c, n=150_000, seed=4)
    wq = _erlang_c_wait(lam, mu, c)
    assert latency.mean() - 1 / mu == pytest.approx(wq, rel=0.06)
    assert latency.mean() == pytest.approx(wq + 1 / mu, rel=0.03)


def test_erlang_c_helper_reduces_to_mm1() -> None:
    assert _erlang_c_wait(0.5, 1.0, 1) == pytest.approx(0.5 / (1.0 - 0.5))
