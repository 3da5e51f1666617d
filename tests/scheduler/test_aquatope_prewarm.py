"""aquatope-prewarm / aquatope: registry, history fallback, concurrency sizing, DAG warming,
JSON state round-trip, composition, and an end-to-end run on the simulator backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.policies.aquatope import AquatopePolicy, compose
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from scheduler.policy import Decision, FunctionDecision, Observation
from scheduler.registry import available_policies, create_policy
from testbed.core.config import Limits
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import fobs

PIPE = Workflow(
    name="pipe",
    qos=QoS(target_s=5.0, percentile=95.0),
    stages=(Stage("a", "entry"), Stage("b", "mid", after=("a",)), Stage("c", "leaf", after=("b",))),
)


def _obs(now_s: float, tick_s: float = 1.0, workflows: bool = True, **arrivals: int) -> Observation:
    fns = {
        name: fobs(name, arrivals=arrivals.get(name, 0), replicas_ready=0, mean_service_s=None)
        for name in ("entry", "mid", "leaf")
    }
    return Observation(
        now_s=now_s, tick_s=tick_s, functions=fns, workflows={"pipe": PIPE} if workflows else {}
    )


def test_registered_with_parameters() -> None:
    info = available_policies()["aquatope-prewarm"]
    assert {"forecaster", "step_s", "quantile", "idle_weight", "cold_start_s", "dag"} <= set(
        info.parameters
    )
    pol = create_policy("aquatope-prewarm", {"forecaster": "ewma", "idle_weight": "2"})
    assert isinstance(pol, AquatopePrewarmPolicy) and pol.idle_weight == 2.0
    with pytest.raises(ValueError, match="forecaster"):
        create_policy("aquatope-prewarm", {"forecaster": "prophet"})
    assert "aquatope" in available_policies()


def test_burst_at_entry_warms_downstream_before_its_first_arrival() -> None:
    on = AquatopePrewarmPolicy(forecaster="ewma")
    off = AquatopePrewarmPolicy(forecaster="ewma", dag=False)
    for t in range(1, 30):  # quiet start: nothing warm
        for pol in (on, off):
            d = pol.decide(_obs(float(t)))
            assert d.functions["mid"].replicas == 0
    burst_on = on.decide(_obs(30.0, entry=20))
    burst_off = off.decide(_obs(30.0, entry=20))
    assert burst_on.functions["entry"].replicas >= 1
    # no request reached mid or leaf yet, but their targets already rose with the entry's
    assert burst_on.functions["mid"].replicas == burst_on.functions["entry"].replicas
    assert burst_on.functions["leaf"].replicas == burst_on.functions["entry"].replicas
    assert burst_off.functions["mid"].replicas == 0 and burst_off.functions["leaf"].replicas == 0


def test_pool_follows_concurrency_not_counts() -> None:
    # sizing alone (max_start_ratio=0): these observations never show the pool growing
    short = AquatopePrewarmPolicy(forecaster="ewma", quantile=0.95, max_start_ratio=0)
    long = AquatopePrewarmPolicy(forecaster="ewma", quantile=0.95, max_start_ratio=0)
    for t in range(1, 121):  # 20 requests per second for two minutes
        fs = fobs("f", arrivals=20, completions=20, mean_service_s=0.01)
        fl = fobs("f", arrivals=20, completions=20, mean_service_s=1.0, max_replicas=100)
        ds = short.decide(Observation(now_s=float(t), tick_s=1.0, functions={"f": fs}))
        dl = long.decide(Observation(now_s=float(t), tick_s=1.0, functions={"f": fl}))
    assert 1 <= ds.functions["f"].replicas <= 3  # load 0.2: a few replicas, not 20
    assert dl.functions["f"].replicas >= 25  # load 20: Poisson headroom above the mean


def test_quiet_function_scales_to_zero_and_idle_weight_trades_replicas() -> None:
    cheap = AquatopePrewarmPolicy(forecaster="ewma", idle_weight=0.05)
    dear = AquatopePrewarmPolicy(forecaster="ewma", idle_weight=20.0)
    rng = np.random.default_rng(0)
    totals = {"cheap": 0, "dear": 0}
    for t in range(1, 601):
        n = int(rng.poisson(0.3))
        f = fobs("f", arrivals=n, completions=n, mean_service_s=0.5)
        o = Observation(now_s=float(t), tick_s=1.0, functions={"f": f})
        totals["cheap"] += cheap.decide(o).functions["f"].replicas or 0
        totals["dear"] += dear.decide(o).functions["f"].replicas or 0
    assert totals["cheap"] > totals["dear"]
    for t in range(601, 800):  # traffic stops: the pool drains to zero
        o = Observation(now_s=float(t), tick_s=1.0, functions={"f": fobs("f")})
        last = dear.decide(o)
    assert last.functions["f"].replicas == 0


@pytest.mark.slow  # imports gpytorch and fits twice
def test_fallback_then_model_from_a_few_minutes() -> None:
    pol = AquatopePrewarmPolicy(forecaster="gp", step_s=10.0, min_history_steps=6)
    reasons = []
    for t in range(1, 121):
        n = 5 if (t // 30) % 2 else 1
        f = fobs("f", arrivals=n, completions=n, mean_service_s=0.2)
        d = pol.decide(Observation(now_s=float(t), tick_s=1.0, functions={"f": f}))
        reasons.append(d.functions["f"].reason.split()[0])
    assert reasons[15] == "ewma" and reasons[-1] == "gp"


def test_state_round_trips_through_json() -> None:
    a = AquatopePrewarmPolicy(forecaster="ewma")
    rng = np.random.default_rng(1)
    trace = rng.poisson(3.0, size=(200, 3))
    for t in range(100):
        a.decide(_obs(float(t + 1), entry=int(trace[t, 0]), mid=int(trace[t, 1])))
    b = AquatopePrewarmPolicy(forecaster="ewma")
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for t in range(100, 200):
        o = _obs(float(t + 1), entry=int(trace[t, 0]), mid=int(trace[t, 1]))
        assert a.decide(o) == b.decide(o)


def test_aquatope_composes_with_or_without_configurator() -> None:
    pol = AquatopePolicy(forecaster="ewma")
    d = pol.decide(_obs(1.0, entry=3))
    if "aquatope-config" not in available_policies():
        assert pol.config is None and "pre-warm only" in d.reason
    assert d.functions["entry"].replicas >= 1
    prewarm = Decision({"f": FunctionDecision(replicas=3, reason="p")})
    config = Decision(
        {"f": FunctionDecision(replicas=1, limits=Limits(cpu_cores=0.5, memory_mb=256))}
    )
    merged = compose(prewarm, config)
    assert merged.functions["f"].replicas == 3
    assert merged.functions["f"].limits == Limits(cpu_cores=0.5, memory_mb=256)
    assert compose(prewarm, Decision.decline("no samples")) == prewarm
    assert json.loads(json.dumps(pol.state_dict()))["prewarm"]["functions"]


def _sim_run(dag: bool) -> dict[str, bool]:
    """Burst of workflow requests on the simulator; first call of each function cold or not."""
    from scheduler.daemon import Daemon
    from testbed.core.platform import FunctionSpec
    from testbed.sim.distributions import Distribution
    from testbed.sim.platform import SimPlatform
    from testbed.sim.profile import FunctionProfile, Profile

    fp = FunctionProfile(
        service_s=Distribution.constant(1.0), cold_start_s=Distribution.constant(2.0)
    )
    sim = SimPlatform(Profile(functions={"entry": fp, "mid": fp, "leaf": fp}), workflows=[PIPE])
    for name in ("entry", "mid", "leaf"):
        sim.deploy(FunctionSpec(name=name))
    policy = AquatopePrewarmPolicy(forecaster="ewma", dag=dag, cold_start_s=2.0)
    daemon = Daemon(sim, policy, clock=sim.clock, tick_s=0.5, workflows=sim.workflows)
    times = 30.1 + np.arange(6) * 0.2
    res = sim.run_trace({"pipe": times}, until_s=60.0, tick_s=0.5, on_tick=lambda t: daemon.tick())
    stages = res.stages.sort_values("start_s")
    return {fn: bool(stages[stages.function == fn].iloc[0].cold_start) for fn in ("entry", "mid")}


def test_end_to_end_on_sim_downstream_warm_before_first_request() -> None:
    with_dag, without = _sim_run(True), _sim_run(False)
    assert with_dag["entry"] and without["entry"]  # nothing could predict the first burst
    assert not with_dag["mid"]  # warmed by the entry's burst before its first call
    assert without["mid"]  # per-function forecasting alone cold-starts it


TIGHT = Workflow(name="tight", qos=QoS(target_s=0.15, percentile=95.0), stages=(Stage("a", "f"),))


def _tight(pol: AquatopePrewarmPolicy, now_s: float, **kw: int) -> int:
    """One tick of function ``f`` in a workflow with a 0.15 s target; returns the target."""
    kw.setdefault("replicas_ready", 1)
    f = fobs("f", mean_service_s=0.05 if kw.get("completions") else None, **kw)
    o = Observation(now_s=now_s, tick_s=1.0, functions={"f": f}, workflows={"tight": TIGHT})
    return pol.decide(o).functions["f"].replicas or 0


def test_slow_cold_start_keeps_a_replica_for_the_break_even_time() -> None:
    # a measured 3.5 s cold start against a 0.15 s target: keep one replica ~19 x 3.5 s
    pol = AquatopePrewarmPolicy(forecaster="ewma", step_s=2.0, cold_start_s=3.5)
    cheap = AquatopePrewarmPolicy(forecaster="ewma", step_s=2.0, cold_start_s=0.1)
    for t in range(1, 12):  # a short burst
        _tight(pol, float(t), arrivals=2, completions=2)
        _tight(cheap, float(t), arrivals=2, completions=2)
    held = [_tight(pol, float(t)) for t in range(12, 70)]  # silence for 58 s
    assert min(held) >= 1  # no scale-down to zero within the keep-alive floor
    gone = [_tight(pol, float(t)) for t in range(70, 200)]
    assert gone[-1] == 0  # ... but it does scale to zero eventually
    cheap_after = [_tight(cheap, float(t)) for t in range(12, 70)]
    assert cheap_after[-1] == 0  # a cold start within the target needs no floor


def test_scale_down_is_gradual_and_up_is_immediate() -> None:
    pol = AquatopePrewarmPolicy(
        forecaster="ewma", step_s=2.0, cold_start_s=2.0, keepalive=False, max_start_ratio=0
    )
    targets = [_tight(pol, float(t), arrivals=40, completions=40) for t in range(1, 30)]
    top = max(targets)
    assert top >= 3
    after = [_tight(pol, float(t), replicas_ready=top) for t in range(30, 120)]
    drops = [a - b for a, b in zip([targets[-1], *after], after, strict=False)]
    assert max(drops) <= 1  # one replica at a time
    first_drop = next(i for i, d in enumerate(drops) if d > 0)
    assert first_drop >= 2  # not before a dropped replica could come back (tick + cold start)
    assert after[-1] == 0


def test_queued_requests_do_not_each_start_a_replica() -> None:
    # a cold start queues 5 requests of 50 ms behind one starting replica: the queue drains
    # in 0.25 s once it is up, far sooner than 5 more 3.5 s cold starts would finish
    pol = AquatopePrewarmPolicy(forecaster="ewma", step_s=2.0, cold_start_s=3.5)
    for t in range(1, 40):
        _tight(pol, float(t), arrivals=1, completions=1)
    n = _tight(pol, 40.0, arrivals=5, inflight=5, queued=5, replicas_ready=0, replicas_starting=1)
    assert n <= 2


@pytest.mark.slow  # imports gpytorch and fits a GP per function
def test_gp_fits_are_rationed_per_tick_and_per_minute() -> None:
    pol = AquatopePrewarmPolicy(forecaster="gp", step_s=2.0, min_history_steps=6)
    rng = np.random.default_rng(0)
    fit_times: dict[str, list[float]] = {"entry": [], "mid": [], "leaf": []}
    for t in range(1, 181):
        counts = {n: int(rng.poisson(2.0)) for n in fit_times}
        pol.decide(_obs(float(t), **counts))
        for name, times in fit_times.items():
            last = pol._fns[name].last_fit_s
            if last is not None and (not times or times[-1] != last):
                times.append(last)
    every = sorted(t for times in fit_times.values() for t in times)
    assert all(len(times) >= 2 for times in fit_times.values())  # each refitted
    assert len(every) == len(set(every))  # never two fits in one tick
    for times in fit_times.values():
        assert min(np.diff(times)) >= 60.0  # at most once a minute per function


def test_starts_at_once_are_limited_by_ready_replicas() -> None:
    pol = AquatopePrewarmPolicy(forecaster="ewma", quantile=0.95)
    targets = []
    for t, (ready, starting) in enumerate([(1, 0), (1, 1), (2, 0), (4, 0)], start=1):
        f = fobs(
            "f",
            arrivals=20,
            completions=20,
            mean_service_s=1.0,
            max_replicas=100,
            replicas_ready=ready,
            replicas_starting=starting,
        )
        d = pol.decide(Observation(now_s=float(t), tick_s=1.0, functions={"f": f}))
        targets.append(d.functions["f"].replicas)
    assert targets == [2, 2, 4, 8]  # at most as many starting as are ready: doubling


def test_cold_start_is_measured_while_replicas_keep_starting() -> None:
    # one replica starts every 2 s and each takes 4 s: "starting" never drops to zero, yet
    # every start is timed, and a start in progress already counts as a lower bound
    pol = AquatopePrewarmPolicy(forecaster="ewma", cold_start_s=1.0)
    starts = [0.0, 2.0, 4.0, 6.0, 8.0]
    reasons = []
    for t in range(1, 13):
        starting = sum(1 for s in starts if s < t <= s + 4.0)
        ready = sum(1 for s in starts if t > s + 4.0)
        f = fobs("f", arrivals=1, replicas_ready=ready, replicas_starting=starting)
        d = pol.decide(Observation(now_s=float(t), tick_s=1.0, functions={"f": f}))
        reasons.append(d.functions["f"].reason)
    assert "cold=3.50s" in reasons[3]  # the first start, 3.5 s in progress: a lower bound
    assert 3.5 <= (pol._fns["f"].cold_start_s or 0.0) <= 4.5
