"""A periodic timer on the simulator: aquatope-prewarm learns period and phase and has the
replica warm before each firing, with fewer cold starts than keep-alive at no more idle
replica-seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scheduler.daemon import Daemon
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policies.keepalive import KeepAlivePolicy
from scheduler.policy import Policy
from testbed.core.platform import FunctionSpec
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import FunctionProfile, Profile

PERIOD_S = 60.0
RUN_S = 45 * 60.0
SCORED_FROM_S = 10 * 60.0  # the first firings teach the period: not scored


def _timer_times(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.arange(30.0, RUN_S - 5.0, PERIOD_S)
    return base + rng.uniform(-0.3, 0.3, base.size)


def _idle_replica_s(timeline: pd.DataFrame, start_s: float, end_s: float) -> float:
    """Replica-seconds warm or starting but serving nothing, within ``[start_s, end_s)``."""
    rows = timeline.sort_values("t_s")
    t = rows["t_s"].to_numpy()
    idle = (rows["replicas_ready"] + rows["replicas_starting"] - rows["busy"]).to_numpy()
    ends = np.append(t[1:], end_s)
    lo, hi = np.clip(t, start_s, end_s), np.clip(ends, start_s, end_s)
    return float(np.sum(np.maximum(idle, 0) * (hi - lo)))


def _run(policy: Policy, seed: int = 0) -> tuple[int, float]:
    cold, _, idle = _run_times(policy, _timer_times(seed), seed)
    return cold, idle


def test_timer_is_warm_before_each_firing_and_beats_keep_alive_at_equal_idle() -> None:
    cold, idle = _run(AquatopePrewarmPolicy(forecaster="ewma"))
    firings = int(np.sum(_timer_times(0) >= SCORED_FROM_S))
    assert cold <= 1  # warm before (nearly) every firing once the period is learned
    assert idle < 0.2 * (RUN_S - SCORED_FROM_S)  # ... and not warm in between
    # keep-alive with windows around that idle budget: the cheapest one holding at least
    # as many idle replica-seconds still cold-starts (almost) every firing
    results = [_run(KeepAlivePolicy(window_s=w)) for w in (5.0, 10.0, 20.0, 40.0, 70.0)]
    at_least_as_idle = [c for c, i in results if i >= idle]
    assert at_least_as_idle, results
    assert at_least_as_idle[0] > cold
    assert at_least_as_idle[0] >= firings // 2


def _thinned_timer_times(seed: int) -> np.ndarray:
    """Two timers (every 2 and every 3 minutes) merged onto one workflow, of whose calls a
    mix sends half to this function: sparse, never memoryless, idle gaps all over."""
    rng = np.random.default_rng(seed)
    fires = np.union1d(np.arange(40.0, RUN_S - 5.0, 120.0), np.arange(70.0, RUN_S - 5.0, 180.0))
    kept = fires[rng.random(fires.size) < 0.5]
    return kept + rng.uniform(-0.3, 0.3, kept.size)


def _run_times(policy: Policy, times: np.ndarray, seed: int = 0) -> tuple[int, int, float]:
    fp = FunctionProfile(
        service_s=Distribution.constant(0.2), cold_start_s=Distribution.constant(2.0)
    )
    sim = SimPlatform(Profile(functions={"timer": fp}), workflows=(), seed=seed)
    sim.deploy(FunctionSpec(name="timer"))
    daemon = Daemon(sim, policy, clock=sim.clock, tick_s=1.0, workflows=sim.workflows)
    res = sim.run_trace(
        {"timer": times}, until_s=RUN_S, tick_s=1.0, on_tick=lambda _t: daemon.tick()
    )
    scored = res.requests[res.requests.sent_s >= SCORED_FROM_S]
    timeline = res.timeline[res.timeline.function == "timer"]
    idle = _idle_replica_s(timeline, SCORED_FROM_S, RUN_S)
    return int(scored.cold_start.sum()), len(scored), idle


def test_periodic_experts_warm_a_thinned_merged_timer_before_its_firings() -> None:
    times = _thinned_timer_times(1)
    cold, calls, idle = _run_times(AquatopePrewarmPolicy(forecaster="ewma"), times)
    assert calls >= 12
    assert cold <= 0.2 * calls  # warm before most calls: the firings' phases are learned
    assert idle < 0.4 * (RUN_S - SCORED_FROM_S)  # ... and cold between them
    # keep-alive holding at least as many idle replica-seconds cold-starts far more
    results = [_run_times(KeepAlivePolicy(window_s=w), times) for w in (30.0, 60.0, 120.0)]
    at_least_as_idle = [c for c, _, i in results if i >= idle]
    assert at_least_as_idle, results
    assert at_least_as_idle[0] >= 3 * max(cold, 1)
