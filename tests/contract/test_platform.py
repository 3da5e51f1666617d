"""The Platform contract: every backend behaves the same for the calls the scheduler makes.

Parametrised over backends: the live gateway with process replicas (``local``) and with
containers (``docker``, marked ``docker``; CI starts the engine), and the simulator (``sim``),
which every scheduling figure relies on, and ``openfaas-ce``, every call through the real
OpenFaaS gateway, Prometheus and AlertManager in front of our provider (marked ``openfaas``;
``.ci/run`` installs what it needs). Time passes on its own for live backends; the
simulator's clock is advanced by the harness instead. Semantics that differ on purpose: the
simulator runs no handler code, so response bodies are simulated (checked only live); OpenFaaS
CE raises a scale to zero to one (zero is its Pro idler's job), so the harness reaches zero
replicas there by redeploying with ``scale.min`` 0, and its gateway holds requests during its
own scale from zero, so our provider sees (and flags) only the first of a burst as cold.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.backends import connect
from testbed.core.canary import canary_name, end_canary, set_canary
from testbed.core.config import Limits
from testbed.core.errors import ConfigError, FunctionNotFound, PlatformError
from testbed.core.platform import FunctionSpec, Platform
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from tests.helpers import wait_until
from tests.sim.sim_helpers import make_profile

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("docker", id="docker", marks=[pytest.mark.docker, pytest.mark.slow]),
    pytest.param("sim", id="sim"),
    pytest.param(
        "openfaas-ce",
        id="openfaas-ce",
        marks=[pytest.mark.openfaas, pytest.mark.docker, pytest.mark.slow],
    ),
]
FUNCTION = "contract-echo"


@dataclass
class Harness:
    """A platform plus how time passes on it and how simultaneous requests are sent."""

    platform: Platform
    runs_code: bool
    # False on OpenFaaS CE: its gateway holds requests during its own scale from zero, so our
    # provider answers all but the first warm, and its metrics have no cold-start counter
    sees_every_cold_start: bool = True

    def settle(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Let time pass until ``predicate()`` holds (simulated time on the simulator)."""
        if isinstance(self.platform, SimPlatform):
            sim = self.platform
            deadline = sim.now + timeout_s
            while not predicate():
                assert sim.now < deadline, "condition not reached in simulated time"
                sim.run_until(sim.now + 0.05)
            return
        wait_until(predicate, timeout_s=timeout_s)

    def scale_to_zero(self, spec: FunctionSpec) -> None:
        """No replica left (a redeploy where the platform keeps one, as OpenFaaS CE does)."""
        self.platform.scale(spec.name, replicas=0)
        if self.platform.status(spec.name).target_replicas > 0:
            self.platform.remove(spec.name)
            self.platform.deploy(spec)
        self.settle(lambda: not self.platform.status(spec.name).replicas, timeout_s=30)

    @contextlib.contextmanager
    def sending(self, name: str, n: int) -> Iterator[None]:
        """``n`` requests to ``name`` sent together, answered by the end of the block."""
        if isinstance(self.platform, SimPlatform):
            sim = self.platform
            for _ in range(n):
                sim.submit(name, at_s=sim.now)
            yield
            sim.drain()
            return
        threads = [
            threading.Thread(target=self.platform.invoke, args=(name, b"waiting")) for _ in range(n)
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            for thread in threads:
                thread.join(timeout=120)

    def burst(self, name: str, n: int) -> list[bool]:
        """``n`` requests to ``name`` that arrive together; returns their cold-start flags."""
        if isinstance(self.platform, SimPlatform):
            sim = self.platform
            ids = {sim.submit(name, at_s=sim.now) for _ in range(n)}
            sim.drain()
            rows = sim.results().requests
            answered = rows[rows["request_id"].isin(ids)]
            assert answered["ok"].all() and len(answered) == n
            return [bool(c) for c in answered["cold_start"]]
        barrier = threading.Barrier(n)
        answers: list[tuple[bool, bool]] = []

        def send() -> None:
            barrier.wait()
            result = self.platform.invoke(name, b"burst")
            answers.append((result.ok, result.cold_start))

        threads = [threading.Thread(target=send) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert [ok for ok, _ in answers] == [True] * n
        return [cold for _, cold in answers]


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    if request.param == "sim":
        profile = make_profile(
            [FUNCTION], service=Distribution.constant(0.01), cold=Distribution.constant(0.4)
        )
        with SimPlatform(profile, seed=0, workflows=()) as sim:
            yield Harness(sim, runs_code=False)
        return
    home = tmp_path_factory.mktemp(f"contract-{request.param}")
    if request.param == "openfaas-ce":
        from tests.openfaas.stackhelp import openfaas_platform

        with openfaas_platform(home) as ce:
            yield Harness(ce, runs_code=True, sees_every_cold_start=False)
        return
    with connect(request.param, state_dir=home) as p:
        yield Harness(p, runs_code=True)


@pytest.fixture(scope="module")
def platform(harness: Harness) -> Platform:
    return harness.platform


@pytest.fixture(scope="module")
def echo_spec(handler_dirs: dict[str, Path]) -> FunctionSpec:
    return FunctionSpec(
        name=FUNCTION,
        image="aquatope/contract-echo:latest",
        handler=str(handler_dirs["echo"]),
        labels={"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "3"},
        limits=Limits(cpu_cores=1.0, memory_mb=128),
        max_inflight=2,
    )


def test_deploy_list_status(platform: Platform, echo_spec: FunctionSpec) -> None:
    platform.deploy(echo_spec)
    assert echo_spec.name in {s.name for s in platform.list()}
    status = platform.status(echo_spec.name)
    assert status.spec.max_inflight == 2
    assert status.limits == Limits(cpu_cores=1.0, memory_mb=128)
    assert status.spec.scale_bounds.max == 3


def test_invoke_cold_then_warm(
    harness: Harness, platform: Platform, echo_spec: FunctionSpec
) -> None:
    harness.scale_to_zero(echo_spec)
    first = platform.invoke(echo_spec.name, b"ping")
    assert first.ok and first.cold_start
    if harness.runs_code:
        assert first.json()["body"] == "ping"  # type: ignore[index]
    second = platform.invoke(echo_spec.name, b"pong")
    assert second.ok and not second.cold_start


def test_burst_from_zero_counts_every_request_cold(
    harness: Harness, platform: Platform, echo_spec: FunctionSpec
) -> None:
    """A request is cold when it arrives with no ready replica, even while one is starting."""
    harness.scale_to_zero(echo_spec)
    before = platform.metrics().functions[echo_spec.name].cold_starts
    cold = harness.burst(echo_spec.name, 4)
    after = platform.metrics().functions[echo_spec.name]
    if harness.sees_every_cold_start:
        assert cold == [True] * 4
        assert after.cold_starts - before == 4
    else:
        assert any(cold)  # the request that made OpenFaaS scale from zero
    assert after.replicas_ready >= 1


def test_requests_waiting_for_a_replica_count_as_in_flight(
    harness: Harness, platform: Platform, echo_spec: FunctionSpec
) -> None:
    """``inflight`` is every request in the gateway, running or queued: what the policies size
    replicas from (``FunctionObservation.inflight``), the same live and simulated."""
    if not harness.sees_every_cold_start:
        pytest.skip("OpenFaaS CE's gateway holds the requests of its own scale from zero")
    harness.scale_to_zero(echo_spec)
    seen: list[tuple[int, int]] = []

    def waiting() -> bool:
        m = platform.metrics().functions[echo_spec.name]
        seen.append((m.inflight, m.queued))
        return m.queued >= 1

    with harness.sending(echo_spec.name, 2):
        harness.settle(waiting, timeout_s=30)
    inflight, queued = seen[-1]
    assert inflight >= queued >= 1


def test_scale_up_down_and_clamp(
    harness: Harness, platform: Platform, echo_spec: FunctionSpec
) -> None:
    platform.scale(echo_spec.name, replicas=2)
    harness.settle(lambda: platform.status(echo_spec.name).replicas_ready == 2, timeout_s=60)
    platform.scale(echo_spec.name, replicas=10)
    assert platform.status(echo_spec.name).target_replicas == 3
    platform.scale(echo_spec.name, replicas=1)
    harness.settle(lambda: platform.status(echo_spec.name).replicas_ready == 1, timeout_s=30)


def test_set_limits_live(platform: Platform, echo_spec: FunctionSpec) -> None:
    platform.set_limits(echo_spec.name, Limits(cpu_cores=0.5, memory_mb=192))
    status = platform.status(echo_spec.name)
    assert status.limits == Limits(cpu_cores=0.5, memory_mb=192)
    assert platform.invoke(echo_spec.name, b"after").ok


def test_metrics_count_invocations(platform: Platform, echo_spec: FunctionSpec) -> None:
    before = platform.metrics().functions[echo_spec.name]
    for _ in range(3):
        platform.invoke(echo_spec.name, b"m")
    after = platform.metrics().functions[echo_spec.name]
    assert after.completed == before.completed + 3
    assert after.started == before.started + 3
    assert after.duration_sum_s > before.duration_sum_s
    assert after.replicas_ready >= 1


def test_errors_are_testbed_errors(platform: Platform, echo_spec: FunctionSpec) -> None:
    with pytest.raises(FunctionNotFound):
        platform.status("no-such-function")
    with pytest.raises(FunctionNotFound):
        platform.scale("no-such-function", replicas=1)
    with pytest.raises(ConfigError):
        platform.scale(echo_spec.name, replicas=-1)


def test_canary_takes_its_share_of_calls_at_its_own_limits(
    harness: Harness, platform: Platform, echo_spec: FunctionSpec
) -> None:
    """A canary (``testbed.core.canary``) gets at most ``floor(share x calls)`` of its
    function's calls, only when free, at the trial's limits, counted under its own name."""
    if not harness.sees_every_cold_start:  # OpenFaaS CE: its gateway counts by name called
        with pytest.raises(PlatformError, match="canaries need the testbed's gateway"):
            set_canary(platform, echo_spec.name, Limits(memory_mb=256))
        return
    platform.scale(echo_spec.name, replicas=1)
    harness.settle(lambda: platform.status(echo_spec.name).replicas_ready >= 1, timeout_s=60)
    incumbent = platform.status(echo_spec.name).limits
    name = set_canary(platform, echo_spec.name, Limits(memory_mb=256), share=0.25)
    assert name == canary_name(echo_spec.name)
    canary = platform.status(name)
    assert canary.limits == Limits(cpu_cores=incumbent.cpu_cores, memory_mb=256)
    assert platform.status(echo_spec.name).limits == incumbent
    assert (canary.spec.scale_bounds.min, canary.spec.scale_bounds.max) == (1, 1)
    harness.settle(lambda: platform.status(name).replicas_ready == 1, timeout_s=60)
    before = platform.metrics().functions[echo_spec.name].started
    answers = [platform.invoke(echo_spec.name, f"c{i}".encode()) for i in range(12)]
    assert all(a.ok for a in answers)
    if harness.runs_code:
        assert sorted(a.json()["body"] for a in answers) == sorted(f"c{i}" for i in range(12))  # type: ignore[index]
    m = platform.metrics().functions
    assert m[name].completed == 3  # floor(0.25 x 12): one replica, always free in turn
    assert m[echo_spec.name].started - before == 9
    assert end_canary(platform, echo_spec.name)
    assert name not in {s.name for s in platform.list()}
    assert not end_canary(platform, echo_spec.name)
    assert platform.invoke(echo_spec.name, b"after").ok


def test_remove(platform: Platform, echo_spec: FunctionSpec) -> None:
    platform.remove(echo_spec.name)
    with pytest.raises(FunctionNotFound):
        platform.status(echo_spec.name)
    assert echo_spec.name not in {s.name for s in platform.list()}
