"""SimPlatform behaves like the gateway: cold starts, queues, scaling, limits, OOM, DAGs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from testbed.core.canary import canary_spec, end_canary, set_canary
from testbed.core.config import Limits
from testbed.core.errors import ConfigError, DeployError, FunctionNotFound
from testbed.core.platform import FunctionSpec, Platform, QoS, Stage, Workflow
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import FunctionProfile, Profile
from tests.sim.sim_helpers import make_profile


def _sim(**kwargs: object) -> SimPlatform:
    profile = make_profile(
        ["f"], service=Distribution.constant(0.5), cold=Distribution.constant(1.0), **kwargs
    )
    sim = SimPlatform(profile, seed=0)
    sim.deploy(FunctionSpec(name="f"))
    return sim


def test_is_a_platform() -> None:
    assert isinstance(_sim(), Platform)


def test_cold_start_exactly_when_no_ready_replica() -> None:
    sim = _sim()
    assert sim.status("f").target_replicas == 0
    for t in (10.0, 10.5, 20.0, 30.0, 30.1):
        sim.submit("f", at_s=t)
    sim.run_until(40.0)
    sim.scale("f", replicas=0)  # idle replica removed at once
    assert sim.status("f").replicas_ready == 0
    sim.submit("f", at_s=50.0)
    sim.run_until(60.0)
    rows = sim.results().requests.sort_values("intended_s")
    # 10.0: no replica -> scale from zero; 10.5: replica still starting; 20.0: idle warm replica;
    # 30.0/30.1: warm replica busy -> the second queues (no cold start); 50.0: scaled to zero.
    assert rows["cold_start"].tolist() == [True, True, False, False, False, True]
    assert rows["latency_s"].tolist() == pytest.approx([1.5, 1.5, 0.5, 0.5, 0.9, 1.5])
    assert sim.metrics().functions["f"].cold_starts == 3
    assert sim.status("f").target_replicas == 1  # scale-from-zero set the target to one


def test_idle_replicas_are_charged_on_the_timeline() -> None:
    sim = _sim()
    sim.scale("f", replicas=2)
    results = sim.run_trace(None, 60.0, tick_s=1.0)
    tl = results.timeline
    assert (tl["t_s"].diff().dropna() <= 1.0 + 1e-9).all()  # at least every second
    after_start = tl[tl["t_s"] >= 1.0]
    assert (after_start["replicas_ready"] == 2).all()
    assert (after_start["busy"] == 0).all()
    alive = tl["replicas_ready"] + tl["replicas_starting"]
    replica_s = float((alive.to_numpy()[:-1] * np.diff(tl["t_s"].to_numpy())).sum())
    assert replica_s == pytest.approx(2 * 60.0)
    assert results.requests.empty


def test_same_seed_same_results_and_other_seed_differs() -> None:
    def run(seed: int) -> pd.DataFrame:
        profile = make_profile(
            ["f", "g"],
            service=Distribution.exponential(0.3),
            cold=Distribution.exponential(1.0),
            overhead=Distribution.exponential(0.002),
        )
        sim = SimPlatform(profile, seed=seed)
        sim.deploy(FunctionSpec(name="f"))
        sim.deploy(FunctionSpec(name="g"))
        rng = np.random.default_rng(7)
        trace = {"f": np.sort(rng.uniform(0, 300, 400)), "g": np.sort(rng.uniform(0, 300, 200))}

        def tick(now_s: float) -> None:
            sim.scale("f", replicas=int(now_s // 60) % 3)

        return sim.run_trace(trace, 300.0, tick_s=1.0, on_tick=tick).requests

    a, b, c = run(1), run(1), run(2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["latency_s"].equals(c["latency_s"])


def test_oom_when_memory_limit_below_need() -> None:
    sim = _sim(memory_mb=200.0)
    assert sim.invoke("f").ok
    sim.set_limits("f", Limits(memory_mb=128))
    result = sim.invoke("f")
    assert result.status_code == 502 and not result.ok
    assert "oom-killed" in json.loads(result.body)["error"]
    # as live (tests/gateway/test_local_backend.py waits for it): the gateway's health poll
    # notices the dead replica within its interval
    sim.run_until(sim.now + 0.5)
    states = [r.state for r in sim.status("f").replicas]
    assert "oom-killed" in states
    assert sim.metrics().functions["f"].errors == 1
    sim.set_limits("f", Limits(memory_mb=256))
    assert sim.invoke("f").ok
    assert sim.status("f").limits == Limits(memory_mb=256)


def test_dead_replica_takes_calls_until_the_health_poll_notices_it() -> None:
    """A gateway that only polls (every 0.5 s): an OOM-killed replica looks ready until then.

    The gateway sees deaths at once (exit notifications), the simulator's default; the poll
    period models a gateway without them.
    """
    polled = _sim(memory_mb=200.0)  # service 0.5 s, cold start 1 s
    sim = SimPlatform(polled.profile, seed=0, health_poll_s=0.5)
    sim.deploy(FunctionSpec(name="f", limits=Limits(memory_mb=128)))
    sim.scale("f", replicas=1)
    sim.run_until(10.2)
    for t in (10.2, 10.8, 10.9, 11.2):
        sim.submit("f", at_s=t)
    sim.run_until(20.0)
    rows = sim.results().requests.sort_values("intended_s")
    # 10.2: OOM-killed at 10.7; 10.8/10.9: routed to the dead replica, 502 at once (not
    # cold: it still counts as ready); poll at 11.0 drops it and starts a replacement;
    # 11.2: cold, waits for the replacement (ready 12.0) and is killed again at 12.5
    assert rows["status"].tolist() == [502, 502, 502, 502]
    assert rows["end_s"].tolist() == pytest.approx([10.7, 10.8, 10.9, 12.5])
    assert rows["cold_start"].tolist() == [False, False, False, True]
    immediate = SimPlatform(sim.profile)  # the default: a death leaves routing at once
    immediate.deploy(FunctionSpec(name="f", limits=Limits(memory_mb=128)))
    immediate.scale("f", replicas=1)
    immediate.run_until(10.2)
    immediate.submit("f", at_s=10.2)
    immediate.submit("f", at_s=10.8)
    immediate.run_until(20.0)
    assert immediate.results().requests.sort_values("intended_s")["cold_start"].tolist() == [
        False,
        True,
    ]


def test_cpu_limit_and_concurrency_scale_service_time() -> None:
    profile = make_profile(
        ["f"],
        service=Distribution.constant(1.0),
        cpu_scaling=((0.5, 2.0), (1.0, 1.0)),
        concurrency_scaling=((1.0, 1.0), (2.0, 1.5)),
    )
    sim = SimPlatform(profile)
    sim.deploy(FunctionSpec(name="f", max_inflight=2))
    sim.scale("f", replicas=1)
    sim.run_until(5.0)
    assert sim.invoke("f").duration_s == pytest.approx(1.0)
    sim.set_limits("f", Limits(cpu_cores=0.5))
    assert sim.invoke("f").duration_s == pytest.approx(2.0)
    sim.set_limits("f", Limits(cpu_cores=1.0))
    t = sim.now
    sim.submit("f", at_s=t)
    sim.submit("f", at_s=t)
    sim.run_until(t + 10)
    last_two = sim.results().requests.tail(2)
    # first call alone on the replica (1.0 s); the second shares it (factor 1.5)
    assert sorted(last_two["latency_s"]) == pytest.approx([1.0, 1.5])


def test_a_call_after_its_replica_sat_idle_runs_slower_by_the_idle_scaling() -> None:
    profile = make_profile(
        ["f"], service=Distribution.constant(1.0), idle_scaling=((0.5, 1.0), (8.0, 3.0))
    )
    sim = SimPlatform(profile)
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=1)
    sim.run_until(30.0)
    # idle since it started (about 30 s): beyond the last level, held at 3x
    assert sim.invoke("f").duration_s == pytest.approx(3.0)
    # right after it (idle 0 s, below the first level): the reference
    assert sim.invoke("f").duration_s == pytest.approx(1.0)
    sim.run_until(sim.now + 2.0)  # idle 2 s: log-linear between 0.5 s (1x) and 8 s (3x)
    assert sim.invoke("f").duration_s == pytest.approx(2.0)


def test_scale_down_removes_idle_first_and_drains_busy() -> None:
    profile = make_profile(["f"], service=Distribution.constant(10.0))
    sim = SimPlatform(profile)
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=2)
    sim.run_until(2.0)
    sim.submit("f", at_s=2.0)
    sim.run_until(3.0)
    busy = [r.id for r in sim.status("f").replicas if r.inflight]
    sim.scale("f", replicas=1)
    status = sim.status("f")
    assert [r.id for r in status.replicas] == busy
    sim.scale("f", replicas=0)
    assert [r.state for r in sim.status("f").replicas] == ["stopping"]
    sim.run_until(20.0)
    assert sim.status("f").replicas == ()
    assert sim.results().requests["ok"].all()


def test_queued_call_times_out_with_504() -> None:
    profile = make_profile(["f"], service=Distribution.constant(10.0))
    sim = SimPlatform(profile, invoke_timeout_s=5.0)
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=1)
    sim.run_until(2.0)
    sim.submit("f", at_s=2.0)
    sim.submit("f", at_s=2.5)
    sim.run_until(30.0)
    rows = sim.results().requests.sort_values("intended_s")
    assert rows["status"].tolist() == [200, 504]
    assert rows["end_s"].iloc[1] == pytest.approx(7.5)
    assert rows["error"].iloc[1] == "timeout"


def test_queue_timeout_is_the_gateways_cold_start_timeout() -> None:
    """The gateway fails a call that waited ``cold_start_timeout_s`` (60 s) for a replica."""
    from testbed.core.config import DEFAULT_COLD_START_TIMEOUT_S, GatewayConfig

    assert GatewayConfig().cold_start_timeout_s == DEFAULT_COLD_START_TIMEOUT_S == 60.0
    profile = make_profile(["f"], service=Distribution.constant(100.0))
    sim = SimPlatform(profile)  # invoke_timeout_s stays 120 s
    sim.deploy(FunctionSpec(name="f"))
    sim.scale("f", replicas=1)
    sim.run_until(2.0)
    sim.submit("f", at_s=2.0)
    sim.submit("f", at_s=2.5)
    sim.run_until(200.0)
    rows = sim.results().requests.sort_values("intended_s")
    assert rows["status"].tolist() == [200, 504]
    assert rows["end_s"].iloc[1] == pytest.approx(62.5)
    longer = SimPlatform(profile, queue_timeout_s=90.0)
    assert longer._engine.queue_timeout_s == 90.0


def _dag_sim() -> SimPlatform:
    def fp(service_s: float) -> FunctionProfile:
        return FunctionProfile(
            service_s=Distribution.constant(service_s), cold_start_s=Distribution.constant(1.0)
        )

    profile = Profile(
        functions={"a": fp(0.1), "b": fp(0.2), "c": fp(0.3), "d": fp(0.1)},
        gateway_overhead_s=Distribution.constant(0.01),
    )
    wf = Workflow(
        "diamond",
        QoS(target_s=2.0),
        (
            Stage("a", "a"),
            Stage("b", "b", ("a",)),
            Stage("c", "c", ("a",)),
            Stage("d", "d", ("b", "c")),
        ),
    )
    sim = SimPlatform(profile, workflows=[wf])
    for name in "abcd":
        sim.deploy(FunctionSpec(name=name))
    return sim


def test_workflow_fan_out_and_join() -> None:
    sim = _dag_sim()
    for name in "abcd":
        sim.scale(name, replicas=1)
    sim.run_until(5.0)
    result = sim.invoke("diamond", workflow=True)
    assert result.ok and not result.cold_start
    # critical path a -> c -> d plus the gateway overhead once for the request
    assert result.duration_s == pytest.approx(0.1 + 0.3 + 0.1 + 0.01)
    stages = {s["stage"]: s for s in json.loads(result.body)["stages"]}
    assert set(stages) == {"a", "b", "c", "d"}
    assert stages["b"]["start_s"] == pytest.approx(stages["a"]["end_s"])
    assert stages["d"]["start_s"] == pytest.approx(max(stages["b"]["end_s"], stages["c"]["end_s"]))
    req = sim.results().requests.iloc[-1]
    assert req["kind"] == "workflow" and req["qos_target_s"] == 2.0


def test_workflow_cold_stages_counted() -> None:
    sim = _dag_sim()
    result = sim.invoke("diamond", workflow=True)
    assert result.cold_start
    rows = sim.results()
    assert int(rows.requests["cold_stages"].iloc[-1]) == 4
    assert rows.stages["cold_start"].all() and len(rows.stages) == 4


def test_errors_name_the_problem() -> None:
    sim = _sim()
    with pytest.raises(FunctionNotFound):
        sim.status("nope")
    with pytest.raises(DeployError, match="no profile for function 'other'"):
        sim.deploy(FunctionSpec(name="other"))
    with pytest.raises(ConfigError, match="'ghost'"):
        sim.run_trace({"ghost": [1.0]}, 5.0)
    sim.deploy(FunctionSpec(name="other", annotations={"aquatope.sim/profile": "f"}))
    assert sim.invoke("other").ok


def test_metrics_are_cumulative_counters() -> None:
    sim = _sim()
    sim.scale("f", replicas=1)
    sim.run_until(2.0)
    before = sim.metrics().functions["f"]
    for t in (2.0, 2.1, 2.2):
        sim.submit("f", at_s=t)
    sim.run_until(2.3)
    mid = sim.metrics().functions["f"]
    assert mid.started - before.started == 3
    assert mid.inflight == 3 and mid.queued == 2  # one runs on the replica, two wait
    sim.run_until(10.0)
    after = sim.metrics().functions["f"]
    assert after.completed - before.completed == 3 and after.inflight == 0
    assert after.duration_sum_s - before.duration_sum_s == pytest.approx(0.5 + 0.9 + 1.3)


def test_scale_on_demand_starts_a_replica_per_unabsorbed_request() -> None:
    """Lambda/OpenWhisk semantics: a busy pool grows instead of queueing (gateway twin:
    tests/gateway/test_local_backend.py::test_scale_on_demand_grows_the_pool)."""
    profile = make_profile(
        ["f"], service=Distribution.constant(0.5), cold=Distribution.constant(1.0)
    )
    sim = SimPlatform(profile, seed=0)
    sim.deploy(
        FunctionSpec(
            name="f",
            labels={"com.aquatope.scale-on-demand": "true", "com.openfaas.scale.max": "3"},
        )
    )
    sim.scale("f", replicas=1)
    sim.run_until(5.0)  # one warm replica
    for t in (10.0, 10.1, 10.2, 10.3):
        sim.submit("f", at_s=t)
    sim.run_until(20.0)
    rows = sim.results().requests.sort_values("intended_s")
    # 10.0 takes the warm replica; 10.1 and 10.2 each start one (cold); 10.3 hits scale.max
    # (3 alive), queues behind the others and is not a cold start of its own.
    assert rows["cold_start"].tolist() == [False, True, True, False]
    assert sim.status("f").target_replicas == 3
    assert sim.metrics().functions["f"].cold_starts == 2
    # the queue stays FIFO: a request that triggered a start takes whichever slot frees first
    # (10.1 gets the warm replica back at 10.5), so nobody waits longer than without scale-out
    assert rows["latency_s"].tolist() == pytest.approx([0.5, 0.9, 1.3, 1.3])


def test_without_the_label_the_platform_queues() -> None:
    sim = _sim()
    sim.scale("f", replicas=1)
    sim.run_until(5.0)
    for t in (10.0, 10.1, 10.2):
        sim.submit("f", at_s=t)
    sim.run_until(20.0)
    assert sim.status("f").target_replicas == 1
    assert sim.metrics().functions["f"].cold_starts == 0


def test_an_oom_ing_canary_fails_at_most_its_share_of_calls() -> None:
    """A trial below the function's memory need, on a canary at share 0.1: only calls routed
    to it fail (at most floor(0.1 x calls)), none waits for it, the function's own are fine."""
    sim = _sim(memory_mb=200.0)  # service 0.5 s, cold start 1 s
    sim.deploy(FunctionSpec(name="f", limits=Limits(memory_mb=256)))
    sim.scale("f", replicas=3)
    sim.run_until(2.0)
    set_canary(sim, "f", Limits(memory_mb=128), share=0.1)
    assert sim.status("f-canary").limits == Limits(memory_mb=128)
    sim.run_until(4.0)
    times = 4.0 + np.arange(400) * 0.25  # 2 calls/s on 3 replicas: no queue of its own
    for t in times:
        sim.submit("f", at_s=float(t))
    sim.run_until(times[-1] + 5.0)
    rows = sim.results().requests
    assert len(rows) == 400
    failed = rows[~rows["ok"]]
    assert 1 <= len(failed) <= 40  # floor(0.1 x 400); the canary restarts after each kill
    m = sim.metrics().functions
    assert m["f-canary"].started == len(failed) and m["f-canary"].errors == len(failed)
    assert m["f"].errors == 0 and m["f"].cold_starts == 0
    assert np.allclose(rows.loc[rows["ok"], "latency_s"], 0.5)  # none waited
    assert not rows["cold_start"].any()
    end_canary(sim, "f")
    with pytest.raises(FunctionNotFound):
        sim.status("f-canary")


def test_canary_deploys_are_checked() -> None:
    sim = _sim()
    with pytest.raises(DeployError, match="'ghost' is not deployed"):
        sim.deploy(canary_spec(FunctionSpec(name="ghost"), Limits(memory_mb=64)))
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\]"):
        set_canary(sim, "f", Limits(memory_mb=64), share=0.0)
    set_canary(sim, "f", Limits(memory_mb=64))
    with pytest.raises(ConfigError, match="a canary has no canary"):
        set_canary(sim, "f-canary", Limits(memory_mb=32))
    with pytest.raises(DeployError, match="cannot become a function"):
        sim.deploy(FunctionSpec(name="f-canary"))
    sim.remove("f")  # takes its canary with it
    assert [s.name for s in sim.list()] == []


def test_a_run_with_a_drain_ends_as_the_live_replay_does() -> None:
    """Ticks go on while requests are in flight after the trace; at the drain's end what is
    left is cancelled like the load generator's (status 0, no cold stage, no stage rows)."""
    sim = _dag_sim()
    for name in "abc":
        sim.scale(name, replicas=1)
    sim.run_until(5.0)  # a, b, c warm; d scaled to zero (its cold start takes 1 s)
    ticks: list[float] = []
    results = sim.run_trace(
        {"diamond": [5.2, 5.9]}, 6.0, tick_s=0.5, on_tick=ticks.append, drain_s=0.5
    )
    # the last arrival at 5.9 + 0.5 drain: the daemon ticks to 6.4, then the run ends
    assert ticks[-2:] == pytest.approx([6.0, 6.4])
    req = results.requests.sort_values("request_id")
    assert req["status"].tolist() == [0, 0]  # d's replica was ready at ~6.6
    assert set(req["error"]) == {"cancelled: run ended before the response"}
    assert req["latency_s"].tolist() == pytest.approx([1.2, 0.5])
    assert not req["cold_start"].any() and (req["cold_stages"] == 0).all()
    assert results.stages.empty  # a, b and c had finished: their rows went with the request
    assert results.timeline["t_s"].max() == pytest.approx(6.4)


def test_a_drain_long_enough_lets_every_request_finish_and_stops_ticking() -> None:
    sim = _dag_sim()
    ticks: list[float] = []
    results = sim.run_trace({"diamond": [0.3]}, 1.0, tick_s=1.0, on_tick=ticks.append, drain_s=30)
    req = results.requests
    assert req["ok"].all() and int(req["cold_stages"].iloc[0]) == 4
    assert len(results.stages) == 4
    # cold a (1 s), then b and c cold side by side, then d: its last stage ends at 3.8 s
    assert ticks == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert float(req["end_s"].iloc[0]) == pytest.approx(3.81)
    with pytest.raises(ConfigError, match="drain_s"):
        sim.run_trace(None, 10.0, drain_s=-1.0)
