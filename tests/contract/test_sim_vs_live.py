"""Sim vs live: one scenario, run on the live local gateway and on the simulator, same outcome.

Each scenario pins a gateway behaviour the simulator must reproduce because the policies'
figures depend on it (cold starts, who waits for what, when a replica goes). Outcomes are
compared as counts and orderings, never as timings: the live side runs on a shared machine.
The simulator's profile gives the functions fixed times, the live side runs a real CPU-bound
handler whose import also burns CPU (as torch's does), so a replica's start outlasts the
few sends a scenario makes while it starts, even on a loaded machine.
"""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.backends import connect
from testbed.core.platform import LABEL_SCALE_ON_DEMAND, FunctionSpec, Platform
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from tests.helpers import wait_until
from tests.sim.sim_helpers import make_profile

FUNCTION = "fid-burn"
SHORT = json.dumps({"n": 200_000}).encode()  # a call of ~0.1 s here
LONG = json.dumps({"n": 4_000_000}).encode()  # a call of a few seconds
SLOW_START_HANDLER = """
    import hashlib, os

    _digest = b"x"
    for _ in range(1_500_000):  # a heavy import: about a second of CPU before the replica serves
        _digest = hashlib.sha256(_digest).digest()


    def handle(event, context):
        n = int((event.json() or {}).get("n", 20000))
        digest = b"x"
        for _ in range(n):
            digest = hashlib.sha256(digest).digest()
        return {"statusCode": 200, "body": {"pid": os.getpid(), "digest": digest.hex()}}
"""


@dataclass
class Side:
    """A platform plus how time passes and how overlapping requests are sent and collected."""

    platform: Platform
    _threads: list[threading.Thread] = field(default_factory=list)
    _done: list[tuple[int, bool, bool]] = field(default_factory=list)
    _sent: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sim(self) -> SimPlatform | None:
        return self.platform if isinstance(self.platform, SimPlatform) else None

    def settle(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Let time pass until ``predicate()`` holds (simulated time on the simulator)."""
        sim = self.sim
        if sim is None:
            wait_until(predicate, timeout_s=timeout_s)
            return
        deadline = sim.now + timeout_s
        while not predicate():
            assert sim.now < deadline, "condition not reached in simulated time"
            sim.run_until(sim.now + 0.05)

    def send(self, body: bytes, barrier: threading.Barrier | None = None) -> None:
        """Send one request now without waiting for its answer."""
        index = len(self._sent) + len(self._threads)
        sim = self.sim
        if sim is not None:
            self._sent.append(sim.submit(FUNCTION, at_s=sim.now))
            return

        def run() -> None:
            if barrier is not None:
                barrier.wait()
            result = self.platform.invoke(FUNCTION, body)
            with self._lock:
                self._done.append((index, result.ok, result.cold_start))

        thread = threading.Thread(target=run)
        thread.start()
        self._threads.append(thread)

    def burst(self, body: bytes, n: int) -> None:
        """``n`` requests that arrive together."""
        barrier = None if self.sim is not None else threading.Barrier(n)
        for _ in range(n):
            self.send(body, barrier)

    def collect(self) -> list[tuple[int, bool, bool]]:
        """Wait for every request sent; ``(send index, ok, cold)`` in completion order."""
        sim = self.sim
        if sim is not None:
            sim.drain()
            rows = sim.results().requests
            rows = rows[rows["request_id"].isin(self._sent)]
            index = {rid: i for i, rid in enumerate(self._sent)}
            done = sorted(
                (float(r.end_s), index[int(r.request_id)], r.status == 200, bool(r.cold_start))
                for r in rows.itertuples()
            )
            self._sent.clear()
            return [(i, ok, cold) for _, i, ok, cold in done]
        for thread in self._threads:
            thread.join(timeout=120)
        out, self._done, self._threads = list(self._done), [], []
        return out

    def started(self) -> int:
        return self.platform.metrics().functions[FUNCTION].started


@pytest.fixture(scope="module", params=["local", "sim"])
def side(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Side]:
    if request.param == "sim":
        profile = make_profile(
            [FUNCTION], service=Distribution.constant(0.1), cold=Distribution.constant(0.4)
        )
        # host_cores unlimited: these scenarios pin queueing semantics, not contention
        with SimPlatform(profile, seed=0, workflows=(), host_cores="unlimited") as sim:
            yield Side(sim)
        return
    home = tmp_path_factory.mktemp("sim-vs-live")
    with connect("local", state_dir=home) as platform:
        yield Side(platform)


@pytest.fixture(scope="module")
def slow_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slow-start")
    (folder / "handler.py").write_text(textwrap.dedent(SLOW_START_HANDLER))
    return folder


def _spec(handler: Path, *, on_demand: bool) -> FunctionSpec:
    labels = {"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "3"}
    if on_demand:
        labels[LABEL_SCALE_ON_DEMAND] = "true"
    return FunctionSpec(name=FUNCTION, handler=str(handler), labels=labels, max_inflight=1)


def _deploy_at_zero(side: Side, spec: FunctionSpec) -> None:
    platform = side.platform
    if FUNCTION in {s.name for s in platform.list()}:
        platform.remove(FUNCTION)
        side.settle(lambda: FUNCTION not in {s.name for s in platform.list()})
    platform.deploy(spec)
    platform.scale(FUNCTION, replicas=0)
    side.settle(lambda: not platform.status(FUNCTION).replicas, timeout_s=30)


def test_requests_queued_behind_a_starting_replica_are_served_in_arrival_order(
    side: Side, slow_start: Path
) -> None:
    """From zero, one replica starts (no scale-out); queued requests take it FIFO, all cold."""
    _deploy_at_zero(side, _spec(slow_start, on_demand=False))
    for i in range(4):
        side.send(SHORT)
        side.settle(lambda i=i: side.started() == i + 1)  # type: ignore[misc]
    done = side.collect()
    assert [i for i, _, _ in done] == [0, 1, 2, 3]
    assert all(ok for _, ok, _ in done)
    status = side.platform.status(FUNCTION)
    assert status.target_replicas == 1  # scale from zero asks for one replica
    assert len(status.replicas) == 1
    assert side.platform.metrics().functions[FUNCTION].cold_starts == 4


def test_scale_on_demand_starts_a_replica_per_queued_request_up_to_max(
    side: Side, slow_start: Path
) -> None:
    """``com.aquatope.scale-on-demand``: a burst of 4 from zero starts 3 replicas (max 3)."""
    _deploy_at_zero(side, _spec(slow_start, on_demand=True))
    side.burst(SHORT, 4)
    done = side.collect()
    assert sorted(i for i, _, _ in done) == [0, 1, 2, 3]
    assert all(ok and cold for _, ok, cold in done)
    status = side.platform.status(FUNCTION)
    assert status.target_replicas == 3
    assert len(status.replicas) == 3
    assert side.platform.metrics().functions[FUNCTION].cold_starts == 4


def test_scale_to_zero_drains_a_busy_replica_and_a_new_request_starts_cold(
    side: Side, slow_start: Path
) -> None:
    """A replica scaled away mid-call finishes it, takes nothing new, and goes when idle."""
    _deploy_at_zero(side, _spec(slow_start, on_demand=False))
    platform = side.platform
    platform.scale(FUNCTION, replicas=1)
    side.settle(lambda: platform.status(FUNCTION).replicas_ready == 1)
    side.send(LONG)
    side.settle(lambda: platform.metrics().functions[FUNCTION].inflight == 1)
    platform.scale(FUNCTION, replicas=0)
    status = platform.status(FUNCTION)
    assert status.replicas_ready == 0
    assert [(r.state, r.inflight) for r in status.replicas] == [("stopping", 1)]
    side.send(SHORT)  # finds no ready replica: cold, scales from zero to one new replica
    done = side.collect()
    assert sorted(done) == [(0, True, False), (1, True, True)]
    side.settle(lambda: len(platform.status(FUNCTION).replicas) == 1)
    status = platform.status(FUNCTION)
    assert status.target_replicas == 1
    assert [r.state for r in status.replicas] == ["ready"]
