"""Observer: counters differenced per tick, first tick zero, resets, status pass-through."""

from __future__ import annotations

import json

import pytest

from scheduler.observe import Observer
from testbed.core.config import Limits
from testbed.core.platform import FunctionMetrics, FunctionSpec, FunctionStatus, MetricsSnapshot


def _status(name: str = "f", *, ready: int = 1, target: int = 1, **spec_kw) -> FunctionStatus:
    spec = FunctionSpec(name=name, **spec_kw)
    return FunctionStatus(
        name=name,
        spec=spec,
        target_replicas=target,
        replicas_ready=ready,
        replicas_starting=0,
        limits=spec.limits,
        limits_enforced=True,
    )


def _snap(at_s: float, **metrics) -> MetricsSnapshot:
    return MetricsSnapshot(at_s=at_s, functions={"f": FunctionMetrics(**metrics)})


def test_first_tick_zero_then_differences() -> None:
    ob = Observer(tick_s=1.0)
    first = ob.update(_snap(0, started=10, completed=9, duration_sum_s=4.5), [_status()], 100.0)
    f = first.functions["f"]
    assert (f.arrivals, f.completions, f.mean_service_s) == (0, 0, None)
    assert first.tick_s == 1.0
    second = ob.update(
        _snap(1, started=15, completed=13, errors=1, cold_starts=2, duration_sum_s=6.5, inflight=2),
        [_status()],
        102.0,
    )
    f = second.functions["f"]
    assert (f.arrivals, f.completions, f.errors, f.cold_starts, f.inflight) == (5, 4, 1, 2, 2)
    assert f.mean_service_s == pytest.approx(0.5)
    assert second.tick_s == 2.0 and second.now_s == 102.0


def test_counter_reset_counts_new_value() -> None:
    ob = Observer()
    ob.update(_snap(0, started=100), [_status()], 0.0)
    after = ob.update(_snap(1, started=3), [_status()], 1.0)  # gateway restarted
    assert after.functions["f"].arrivals == 3


def test_status_fields_and_missing_metrics() -> None:
    ob = Observer()
    status = _status(
        ready=2,
        target=3,
        labels={"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "4"},
        limits=Limits(cpu_cores=0.5, memory_mb=256),
        max_inflight=3,
    )
    o = ob.update(MetricsSnapshot(at_s=0, functions={}), [status], 5.0)
    f = o.functions["f"]
    assert (f.replicas_ready, f.target_replicas, f.min_replicas, f.max_replicas) == (2, 3, 1, 4)
    assert f.limits == Limits(cpu_cores=0.5, memory_mb=256) and f.max_inflight == 3
    assert f.arrivals == 0


def test_state_round_trip_continues_differences() -> None:
    a = Observer()
    a.update(_snap(0, started=7), [_status()], 0.0)
    b = Observer()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    o = b.update(_snap(1, started=9), [_status()], 1.0)
    assert o.functions["f"].arrivals == 2


def test_a_canary_is_observed_apart_under_its_functions_name() -> None:
    from testbed.core.canary import canary_spec

    primary = FunctionSpec(name="f")
    canary = canary_spec(primary, Limits(memory_mb=256), share=0.2)
    statuses = [
        _status(),
        FunctionStatus(
            name=canary.name,
            spec=canary,
            target_replicas=1,
            replicas_ready=1,
            replicas_starting=0,
            limits=canary.limits,
            limits_enforced=True,
        ),
    ]
    ob = Observer()

    def snap(at_s: float, n: int) -> MetricsSnapshot:
        return MetricsSnapshot(
            at_s=at_s,
            functions={
                "f": FunctionMetrics(started=9 * n, completed=9 * n),
                canary.name: FunctionMetrics(started=n, completed=n, errors=n),
            },
        )

    ob.update(snap(0, 1), statuses, 0.0)
    obs = ob.update(snap(1, 3), statuses, 1.0)
    assert set(obs.functions) == {"f"} and set(obs.canaries) == {"f"}
    assert (obs.functions["f"].arrivals, obs.canaries["f"].arrivals) == (18, 2)
    assert obs.canaries["f"].errors == 2 and obs.canaries["f"].limits.memory_mb == 256
