"""A start on a saturated host is priced by what it takes from the calls beside it.

Replicas share the host's cores with the replicas starting beside them; once the demand
exceeds the cores, a start's CPU-seconds slow every call running (processor sharing), and
the pre-warmer charges that delay as it charges a cold start: by its share of the
workflow's QoS target. An idle host charges nothing, and the first replica's start, which
the platform makes anyway when its call comes, only for the chance that no call comes."""

from __future__ import annotations

import pytest

from scheduler.forecast.pool import replicas_worth_keeping
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy, PrewarmConfig
from scheduler.policy import Observation
from scheduler.registry import create_policy
from testbed.core.platform import QoS, Stage, Workflow
from tests.scheduler.sched_helpers import fobs


def test_contention_is_charged_to_new_starts_and_to_the_first_only_for_its_doubt() -> None:
    # the first replica: 0.9 x 10 = 9 > 1 + (1 - 0.9) x 50 = 6; a sure call is started
    # whatever the contention (its start comes anyway); a doubtful one is not
    assert replicas_worth_keeping([0.9], blocked_cost=10, idle_cost=1, contention_cost=50) == 1
    assert replicas_worth_keeping([1.0], blocked_cost=10, idle_cost=1, contention_cost=1e6) == 1
    assert replicas_worth_keeping([0.5], blocked_cost=10, idle_cost=1, contention_cost=50) == 0
    # a second replica pays it all, unless it is already running or starting
    need = [0.9, 0.9]
    assert replicas_worth_keeping(need, blocked_cost=10, idle_cost=1) == 2
    assert replicas_worth_keeping(need, blocked_cost=10, idle_cost=1, contention_cost=50) == 1
    assert (
        replicas_worth_keeping(need, blocked_cost=10, idle_cost=1, contention_cost=50, current=2)
        == 2
    )


_FLOW = Workflow(
    name="pair",
    qos=QoS(target_s=1.0),
    stages=(Stage("a", "a"), Stage("b", "b", after=("a",))),
)


def _replicas_of_a(
    *,
    host_cores: float | None,
    busy_b: int,
    contention: bool = True,
    b_calls: int | None = None,
    b_service_s: float = 0.5,
) -> int:
    """Replicas wanted for ``a`` (20 calls/s of 50 ms, one replica ready) after a minute,
    while ``b`` has ``busy_b`` calls in flight at each tick's end and ``b_calls`` calls a
    second (default ``busy_b``) of ``b_service_s``, on a host of ``host_cores``."""
    calls = busy_b if b_calls is None else b_calls
    pol = AquatopePrewarmPolicy(
        PrewarmConfig(
            forecaster="ewma",
            step_s=2.0,
            max_start_ratio=0,
            host_cores=host_cores,
            contention=contention,
            gaps=False,
            phase=False,
            dag=False,
        )
    )
    replicas = None
    for t in range(1, 61):
        a = fobs("a", arrivals=20, completions=20, mean_service_s=0.05, replicas_ready=1)
        b = fobs(
            "b",
            arrivals=calls,
            completions=calls,
            inflight=busy_b,
            mean_service_s=b_service_s,
            replicas_ready=max(busy_b, 4),
        )
        o = Observation(
            now_s=float(t), tick_s=1.0, functions={"a": a, "b": b}, workflows={"pair": _FLOW}
        )
        replicas = pol.decide(o).functions["a"].replicas
    assert replicas is not None
    return replicas


def test_a_saturated_host_starts_no_replica_an_idle_one_would() -> None:
    idle_host = _replicas_of_a(host_cores=64.0, busy_b=4)
    assert idle_host >= 2  # 20 calls/s of 50 ms on a 1 s target: a second replica pays
    assert _replicas_of_a(host_cores=None, busy_b=4) == idle_host  # no host known: none
    assert _replicas_of_a(host_cores=2.0, busy_b=4, contention=False) == idle_host
    # b's four calls fill two cores: a start would slow each by its CPU over the cores
    assert _replicas_of_a(host_cores=2.0, busy_b=4) == 1
    # with a core to spare the start takes nothing from the calls
    assert _replicas_of_a(host_cores=6.0, busy_b=4) == idle_host


def test_calls_shorter_than_a_tick_load_the_host_by_their_rate() -> None:
    # 80 calls/s of 50 ms are four cores' worth, though none is in flight at a tick's end
    assert _replicas_of_a(host_cores=64.0, busy_b=0, b_calls=80, b_service_s=0.05) >= 2
    assert _replicas_of_a(host_cores=2.0, busy_b=0, b_calls=80, b_service_s=0.05) == 1
    # 8 calls/s are 0.4 of a core: with a's own core and a start's, 2.4 of 3
    assert _replicas_of_a(host_cores=3.0, busy_b=0, b_calls=8, b_service_s=0.05) >= 2
    assert _replicas_of_a(host_cores=2.0, busy_b=0, b_calls=8, b_service_s=0.05) == 1


def test_host_cores_must_be_a_positive_finite_count() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan"), "abc"):
        with pytest.raises(ValueError, match="host_cores"):
            PrewarmConfig(host_cores=bad)  # type: ignore[arg-type]
    assert PrewarmConfig(host_cores=2).host_cores == 2
    # as a --param: a number, or none (a host that is not known: no contention priced)
    policy = create_policy("aquatope-prewarm", {"host_cores": "2"})
    assert isinstance(policy, AquatopePrewarmPolicy) and policy.config.host_cores == 2
    policy = create_policy("aquatope-prewarm", {"host_cores": "none"})
    assert isinstance(policy, AquatopePrewarmPolicy) and policy.config.host_cores is None
