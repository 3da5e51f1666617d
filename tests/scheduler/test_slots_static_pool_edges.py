"""Per-replica slots and the static pool: the edges the keep-alive policies and the baseline
depend on.

Written against the mutation survivors of ``scheduler/policies/slots.py`` and
``scheduler/policies/static_pool.py`` (``scripts/mutation.py``): how the per-tick
concurrency is estimated (requests in flight at the tick's start, Little's law, requests per
replica, queued requests), functions forgotten and restored from JSON, and the static pool's
size and reasons.
"""

from __future__ import annotations

import json
from typing import Any

from scheduler.policies.slots import SlotTracker, busy_replicas
from scheduler.policies.static_pool import StaticPoolPolicy
from scheduler.registry import create_policy
from tests.scheduler.sched_helpers import fobs, step

# --------------------------------------------------------------------------- busy_replicas


def test_requests_in_flight_at_the_tick_start_count_even_when_they_failed() -> None:
    # two requests were running when the tick began; both finished in it, with an error
    fn = fobs(completions=2, errors=2, inflight=0, replicas_ready=2)
    assert busy_replicas(fn, prev_inflight=2, tick_s=1.0) == 2
    # of five in flight at the start, at most the one still there and the one finished ran
    fn = fobs(completions=1, inflight=1, replicas_ready=5)
    assert busy_replicas(fn, prev_inflight=5, tick_s=1.0) == 2


def test_littles_law_counts_requests_that_overlapped_inside_the_tick() -> None:
    fn = fobs(arrivals=10, mean_service_s=0.5, replicas_ready=0)
    assert busy_replicas(fn, 0, 1.0) == 5  # exactly 5 at once: not rounded up to 6
    assert busy_replicas(fn, 0, 2.0) == 3  # 2.5 at once in a 2 s tick
    assert busy_replicas(fn, 0, 0.0) == 1  # no tick length: only "something arrived"


def test_a_replica_takes_max_inflight_requests() -> None:
    fn = fobs(inflight=9, max_inflight=4, replicas_ready=3)
    assert busy_replicas(fn, 9, 1.0) == 3


def test_queued_requests_keep_every_replica_the_platform_runs_or_starts() -> None:
    waiting = fobs(inflight=2, queued=1, replicas_ready=1, replicas_starting=2)
    assert busy_replicas(waiting, 0, 1.0) == 3
    served = fobs(inflight=2, replicas_ready=1, replicas_starting=2)
    assert busy_replicas(served, 0, 1.0) == 2  # no queue: the started replica is not in use


# --------------------------------------------------------------------------- SlotTracker


def test_an_unknown_function_keeps_no_slot_and_has_no_last_use() -> None:
    tracker = SlotTracker()
    assert tracker.kept("nobody", 10.0, 60.0) == 0
    assert tracker.last_use("nobody") is None


def test_forgotten_functions_leave_no_state_and_start_afresh() -> None:
    tracker = SlotTracker()
    assert tracker.observe(fobs("f", inflight=3, replicas_ready=0), 0.0, 1.0) == 3
    assert tracker.observe(fobs("g", arrivals=1, replicas_ready=0), 0.0, 1.0) == 1
    tracker.forget_except({"g": object()})
    assert tracker.state_dict() == {"last_use_s": {"g": [0.0]}, "prev_inflight": {"g": 0}}
    # f deployed again: its three earlier requests are not in flight at this tick's start
    assert tracker.observe(fobs("f", completions=3, replicas_ready=0), 5.0, 1.0) == 1


def test_a_state_without_prev_inflight_loads_and_its_functions_can_be_forgotten() -> None:
    tracker = SlotTracker()
    tracker.load_state_dict({"last_use_s": {"f": [3.0, 1.0]}})
    assert tracker.kept("f", 5.0, 3.0) == 1  # slot 1 used 2 s ago, slot 2 4 s ago
    tracker.forget_except({})
    assert tracker.state_dict() == {"last_use_s": {}, "prev_inflight": {}}


TICKS: list[dict[str, int]] = [
    {"inflight": 3},
    {"completions": 3},  # the three in flight at the start finished: three replicas ran
    {},
    {"arrivals": 1, "inflight": 1},
    {"completions": 1},
]


def test_a_tracker_restored_from_json_every_tick_counts_as_one_that_never_stopped() -> None:
    live = SlotTracker()
    state: dict[str, Any] = {}
    used = []
    for t, kw in enumerate(TICKS):
        restored = SlotTracker()
        restored.load_state_dict(json.loads(json.dumps(state)))
        fn = fobs("f", replicas_ready=0, **kw)
        used.append(live.observe(fn, float(t), 1.0))
        assert restored.observe(fn, float(t), 1.0) == used[-1], t
        state = restored.state_dict()
        assert state == live.state_dict(), t
    assert used == [3, 3, 0, 1, 1]
    assert live.last_use_s["f"] == [4.0, 1.0, 1.0]


# --------------------------------------------------------------------------- static pool


def test_static_pool_defaults_to_one_replica_with_its_reasons() -> None:
    policy = create_policy("static-pool")
    assert isinstance(policy, StaticPoolPolicy) and policy.replicas == 1
    d = step(StaticPoolPolicy(), 0.0, replicas_ready=0)
    assert d.functions["f"].replicas == 1
    assert d.functions["f"].reason == "static pool of 1"
    assert d.reason == "static pool 1"


def test_static_pool_keeps_ready_and_starting_replicas_while_one_request_queues() -> None:
    d = step(StaticPoolPolicy(1), 0.0, inflight=3, queued=1, replicas_ready=1, replicas_starting=2)
    assert d.functions["f"].replicas == 3
    assert d.functions["f"].reason == "static pool of 1; 1 queued: keep the 3 alive"


def test_static_pool_large_enough_for_the_queue_keeps_its_size_and_reason() -> None:
    d = step(StaticPoolPolicy(3), 0.0, inflight=5, queued=2, replicas_ready=2, replicas_starting=1)
    assert d.functions["f"].replicas == 3
    assert d.functions["f"].reason == "static pool of 3"
    assert d.reason == "static pool 3"
