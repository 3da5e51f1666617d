"""What the platforms measure for the configurator, through the observer into Observation:
workflow end-to-end latency (a histogram, per tick) and replicas' peak memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.observe import Observer
from testbed.core.latency import (
    WORKFLOW_LATENCY_BUCKETS_S,
    LatencyHistogram,
    WorkflowMetrics,
    latencies_between,
)
from testbed.core.platform import (
    FunctionSpec,
    MetricsSnapshot,
    QoS,
    Stage,
    Workflow,
)
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import FunctionProfile, Profile


def test_latencies_read_back_within_two_and_a_half_percent() -> None:
    hist = LatencyHistogram()
    measured = [0.0012, 0.0309, 0.15, 0.1501, 2.0, 59.9]
    for x in measured:
        hist.add(x, ok=True)
    hist.add(0.01, ok=False)  # failed: met no target, whatever its latency
    hist.add(1e6, ok=True)  # slower than the largest bucket
    snap = hist.snapshot()
    assert (snap.completed, snap.errors) == (8, 1)
    assert len(snap.latency_counts) == len(WORKFLOW_LATENCY_BUCKETS_S) + 1
    back = latencies_between(None, snap.latency_counts)
    assert back[-2:] == (math.inf, math.inf)
    for got, want in zip(back[:-2], sorted(measured), strict=True):
        assert got == pytest.approx(want, rel=0.025)


def test_only_new_requests_count_and_a_restart_counts_from_zero() -> None:
    hist = LatencyHistogram()
    hist.add(0.1, ok=True)
    first = hist.snapshot().latency_counts
    hist.add(0.5, ok=True)
    assert latencies_between(first, hist.snapshot().latency_counts) == pytest.approx(
        (0.5,), rel=0.025
    )
    restarted = LatencyHistogram()
    restarted.add(0.2, ok=True)
    later = restarted.snapshot().latency_counts
    assert latencies_between(hist.snapshot().latency_counts, later) == pytest.approx(
        (0.2,), rel=0.025
    )


def test_observer_gives_each_tick_the_latencies_finished_in_it() -> None:
    hist = LatencyHistogram()
    observer = Observer(tick_s=1.0)

    def tick(now_s: float, workflows: dict[str, WorkflowMetrics]):
        snap = MetricsSnapshot(at_s=now_s, functions={}, workflows=workflows)
        return observer.update(snap, [], now_s).workflow_latency_s

    hist.add(0.3, ok=True)
    assert tick(1.0, {"w": hist.snapshot()}) == {}  # the first tick only sets the baseline
    hist.add(0.04, ok=True)
    hist.add(0.05, ok=False)
    got = tick(2.0, {"w": hist.snapshot()})
    assert got["w"][0] == pytest.approx(0.04, rel=0.025) and got["w"][1] == math.inf
    assert tick(3.0, {"w": hist.snapshot()}) == {}  # nothing new
    late = LatencyHistogram()  # a workflow first seen after the first tick: nothing lost
    late.add(1.5, ok=True)
    assert tick(4.0, {"w": hist.snapshot(), "v": late.snapshot()})["v"] == pytest.approx(
        (1.5,), rel=0.025
    )
    restored = Observer(tick_s=1.0)
    restored.load_state_dict(observer.state_dict())
    late.add(2.5, ok=True)
    snap = MetricsSnapshot(at_s=5.0, functions={}, workflows={"v": late.snapshot()})
    assert restored.update(snap, [], 5.0).workflow_latency_s["v"] == pytest.approx(
        (2.5,), rel=0.025
    )


def test_simulated_workflow_latencies_reach_the_observation() -> None:
    def fp(service_s: float) -> FunctionProfile:
        return FunctionProfile(
            service_s=Distribution.constant(service_s), cold_start_s=Distribution.constant(1.0)
        )

    profile = Profile(
        functions={"a": fp(0.1), "b": fp(0.3)}, gateway_overhead_s=Distribution.constant(0.01)
    )
    wf = Workflow("chain", QoS(target_s=1.0), (Stage("a", "a"), Stage("b", "b", ("a",))))
    sim = SimPlatform(profile, workflows=[wf])
    for name in "ab":
        sim.deploy(FunctionSpec(name=name))
    observer = Observer(tick_s=1.0, workflows={"chain": wf})
    observer.observe(sim, sim.now)
    for _ in range(3):  # the first finds both functions cold
        sim.invoke("chain", workflow=True)
    obs = observer.observe(sim, sim.now)
    want = sim.results().requests["latency_s"].to_numpy()
    got = np.sort(np.asarray(obs.workflow_latency_s["chain"]))
    assert got == pytest.approx(np.sort(want), rel=0.025)
    assert got[0] == pytest.approx(0.1 + 0.3 + 0.01, rel=0.025)  # warm
    assert got[-1] > 2.0  # the first one waited for two cold starts


def test_simulated_peak_memory_reaches_the_observation() -> None:
    profile = Profile(
        functions={
            "f": FunctionProfile(
                service_s=Distribution.constant(0.1),
                cold_start_s=Distribution.constant(1.0),
                memory_mb=330.0,
            )
        }
    )
    sim = SimPlatform(profile)
    sim.deploy(FunctionSpec(name="f"))
    observer = Observer(tick_s=1.0)
    sim.scale("f", replicas=1)
    sim.run_until(2.0)
    assert observer.observe(sim, sim.now).functions["f"].peak_rss_mb is None  # not used yet
    sim.invoke("f")
    assert observer.observe(sim, sim.now).functions["f"].peak_rss_mb == 330.0
