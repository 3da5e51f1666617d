"""A tiny simulated platform for scheduler scenarios: constant service and cold-start times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.daemon import Daemon
from scheduler.policy import Policy
from testbed.core.platform import LABEL_SCALE_MAX, LABEL_SCALE_ON_DEMAND, FunctionSpec
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import FunctionProfile, Profile

__all__ = ["ScenarioRun", "run_scenario"]


@dataclass(frozen=True)
class ScenarioRun:
    """Per-sample replica counts and the run's cold starts and idle replica-seconds."""

    t_s: np.ndarray
    alive: np.ndarray  # replicas ready + starting after each tick, function "f"
    cold_starts: int
    idle_replica_s: float

    def alive_at(self, t_s: float) -> int:
        return int(self.alive[np.searchsorted(self.t_s, t_s)])


def run_scenario(
    policy: Policy,
    arrivals: Mapping[str, Sequence[float]],
    until_s: float,
    *,
    service_s: float = 5.0,
    cold_start_s: float = 1.0,
    tick_s: float = 1.0,
) -> ScenarioRun:
    """Replay ``arrivals`` (function name -> times) under ``policy`` on the simulator.

    Functions scale out on demand (Lambda/OpenWhisk style) and take one request at a time.
    """
    fp = FunctionProfile(
        service_s=Distribution.constant(service_s), cold_start_s=Distribution.constant(cold_start_s)
    )
    sim = SimPlatform(Profile(functions={f: fp for f in arrivals}), seed=0, workflows=())
    for f in arrivals:
        sim.deploy(
            FunctionSpec(
                name=f,
                labels={LABEL_SCALE_ON_DEMAND: "true", LABEL_SCALE_MAX: "20"},
            )
        )
    daemon = Daemon(sim, policy, clock=sim.clock, tick_s=tick_s, workflows=sim.workflows)
    times = {f: np.asarray(sorted(v), dtype=float) for f, v in arrivals.items()}
    res = sim.run_trace(times, until_s, tick_s=tick_s, on_tick=lambda _t: daemon.tick())
    tl = res.timeline.sort_values(["function", "t_s"])
    idle = 0.0
    first = sorted(arrivals)[0]
    t_first = np.zeros(0)
    alive_first = np.zeros(0, dtype=np.int64)
    for fn, part in tl.groupby("function"):
        t = part["t_s"].to_numpy()
        alive = (part["replicas_ready"] + part["replicas_starting"]).to_numpy()
        dt = np.clip(np.diff(np.append(t, until_s)), 0.0, None)
        idle += float(np.sum(np.clip(alive - part["busy"].to_numpy(), 0, None) * dt))
        if fn == first:
            t_first, alive_first = t, alive
    return ScenarioRun(t_first, alive_first, int(res.requests["cold_stages"].sum()), idle)
