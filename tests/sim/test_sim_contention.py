"""CPU contention between replicas on a small host: calls and starts share the host's cores."""

from __future__ import annotations

import math

import pytest

from testbed.core.config import Limits
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import Profile
from tests.sim.sim_helpers import make_profile


def _profile(cores: int | None = None) -> Profile:
    profile = make_profile(
        ["f"], service=Distribution.constant(1.0), cold=Distribution.constant(2.0)
    )
    if cores is None:
        return profile
    return Profile(
        profile.functions,
        profile.gateway_overhead_s,
        provenance={"machine": {"cpu_count": cores}},
    )


def _burst_latencies(sim: SimPlatform, n: int, *, replicas: int, limits: Limits) -> list[float]:
    sim.deploy(FunctionSpec(name="f", max_inflight=1, limits=limits))
    sim.scale("f", replicas=replicas)
    sim.run_until(10.0)
    for _ in range(n):
        sim.submit("f", at_s=10.0)
    sim.drain()
    return sorted(sim.results().requests["latency_s"].tolist())


def test_calls_within_the_host_cores_run_at_full_speed() -> None:
    sim = SimPlatform(_profile(), seed=0, workflows=(), host_cores=2)
    assert _burst_latencies(sim, 2, replicas=4, limits=Limits()) == pytest.approx([1.0, 1.0])


def test_calls_beyond_the_host_cores_are_stretched() -> None:
    sim = SimPlatform(_profile(), seed=0, workflows=(), host_cores=2)
    # 4 single-threaded calls of 1 s on 2 cores share them: each runs at half speed
    assert _burst_latencies(sim, 4, replicas=4, limits=Limits()) == pytest.approx([2.0] * 4)
    unlimited = SimPlatform(_profile(), seed=0, workflows=(), host_cores=math.inf)
    assert _burst_latencies(unlimited, 4, replicas=4, limits=Limits()) == pytest.approx([1.0] * 4)


def test_a_cpu_limit_caps_what_a_call_takes_from_the_host() -> None:
    sim = SimPlatform(_profile(), seed=0, workflows=(), host_cores=2)
    # four calls limited to half a core demand two cores in all: no contention
    lat = _burst_latencies(sim, 4, replicas=4, limits=Limits(cpu_cores=0.5))
    assert lat == pytest.approx([1.0] * 4)


def test_starting_replicas_share_the_host() -> None:
    sim = SimPlatform(_profile(), seed=0, workflows=(), host_cores=2)
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=4)  # four process starts at once on two cores
    startups = sorted(r.startup_s or 0.0 for r in _ready(sim, 4))
    assert startups == pytest.approx([4.0] * 4)
    sim.scale("f", replicas=0)
    sim.scale("f", replicas=1)  # alone on the host again: the profile's time
    assert [r.startup_s for r in _ready(sim, 1)] == pytest.approx([2.0])


def test_a_start_takes_the_cores_its_profile_measured() -> None:
    import dataclasses

    base = _profile()
    heavy = dataclasses.replace(base.functions["f"], cold_start_cores=1.5)
    sim = SimPlatform(
        Profile({"f": heavy}, base.gateway_overhead_s), seed=0, workflows=(), host_cores=2
    )
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=1)  # 1.5 cores of 2: alone it is not slowed
    assert [r.startup_s for r in _ready(sim, 1)] == pytest.approx([2.0])
    sim.scale("f", replicas=0)
    sim.scale("f", replicas=4)  # 6 cores asked of 2: each at a third of its speed
    assert sorted(r.startup_s or 0.0 for r in _ready(sim, 4)) == pytest.approx([6.0] * 4)


def test_processor_sharing_follows_the_demand_as_it_changes() -> None:
    sim = SimPlatform(_profile(), seed=0, workflows=(), host_cores=1)
    sim.deploy(FunctionSpec(name="f", max_inflight=1))
    sim.scale("f", replicas=2)
    sim.run_until(10.0)
    sim.submit("f", at_s=10.0)
    sim.submit("f", at_s=10.5)  # from 10.5 both share one core
    sim.drain()
    rows = sim.results().requests.sort_values("intended_s")
    # first: 0.5 s alone, then its last 0.5 s at half speed -> ends at 11.5;
    # second: 0.5 s of work by 11.5, its last 0.5 s alone -> ends at 12.0
    assert rows["end_s"].tolist() == pytest.approx([11.5, 12.0])


def test_host_cores_default_to_the_profile_machine() -> None:
    measured_on_two = SimPlatform(_profile(cores=2), seed=0, workflows=())
    lat = _burst_latencies(measured_on_two, 4, replicas=4, limits=Limits())
    assert max(lat) == pytest.approx(2.0)
    unknown_machine = SimPlatform(_profile(), seed=0, workflows=())
    assert max(_burst_latencies(unknown_machine, 4, replicas=4, limits=Limits())) == 1.0


def test_bad_host_cores_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="host_cores"):
        SimPlatform(_profile(), workflows=(), host_cores=0)
    with pytest.raises(ConfigError, match="host_cores"):
        SimPlatform(_profile(), workflows=(), host_cores="many")


def _ready(sim: SimPlatform, n: int) -> list:  # type: ignore[type-arg]
    deadline = sim.now + 60.0
    while sim.status("f").replicas_ready < n:
        assert sim.now < deadline
        sim.run_until(sim.now + 0.1)
    return [r for r in sim.status("f").replicas if r.state == "ready"]


@pytest.mark.timeout(20)
def test_work_left_below_the_clocks_resolution_still_finishes() -> None:
    # Virtual time (the work each job has received) lags the clock after contention. With
    # it just below 2**15 s and the clock just above, one step of virtual time (3.6e-12)
    # is half a step of the clock and rounds away: the job's last sliver of work was
    # scheduled at the same instant, forever (a simulated day hung at t = 32769 s).
    sim = SimPlatform(_profile(), seed=0, workflows=(), host_cores=1)
    sim.deploy(FunctionSpec(name="f", max_inflight=1))
    sim.scale("f", replicas=1)
    sim.run_until(32769.0)
    sim.submit("f", at_s=32769.356206342374)
    sim.run_until(32769.5)
    engine = sim._engine
    engine._advance_v()
    engine._v = 32767.5
    _, *rest = engine._cpu_jobs[0]
    engine._cpu_jobs[0] = (math.nextafter(engine._v, math.inf), *rest)
    engine._retime()
    sim.run_until(32771.0)
    assert sim.results().requests["status"].tolist() == [200]
    assert not engine._cpu_jobs and engine.cpu_busy == 0.0
