"""The Platform contract: every backend behaves the same for the calls the scheduler makes.

Parametrised over backends; the docker case is marked ``docker`` (CI starts the engine); the
``openfaas-ce`` case runs every call through the real OpenFaaS gateway, Prometheus and
AlertManager in front of our provider (marked ``openfaas``; ``.ci/run`` installs what it needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.backends import connect
from testbed.core.config import Limits
from testbed.core.errors import ConfigError, FunctionNotFound
from testbed.core.platform import FunctionSpec, Platform
from tests.helpers import wait_until

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("docker", id="docker", marks=[pytest.mark.docker, pytest.mark.slow]),
    pytest.param(
        "openfaas-ce",
        id="openfaas-ce",
        marks=[pytest.mark.openfaas, pytest.mark.docker, pytest.mark.slow],
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp(f"contract-{request.param}")
    if request.param == "openfaas-ce":
        from tests.openfaas.stackhelp import openfaas_platform

        with openfaas_platform(home) as p:
            yield p
        return
    with connect(request.param, state_dir=home) as p:
        yield p


@pytest.fixture(scope="module")
def echo_spec(handler_dirs: dict[str, Path]) -> FunctionSpec:
    return FunctionSpec(
        name="contract-echo",
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


def test_invoke_cold_then_warm(platform: Platform, echo_spec: FunctionSpec) -> None:
    platform.scale(echo_spec.name, replicas=0)
    if platform.status(echo_spec.name).target_replicas > 0:
        # OpenFaaS CE raises every scale request to at least 1 (zero is its Pro idler's job);
        # a fresh deployment with scale.min 0 starts at zero replicas instead.
        platform.remove(echo_spec.name)
        platform.deploy(echo_spec)
    wait_until(lambda: not platform.status(echo_spec.name).replicas, timeout_s=30)
    first = platform.invoke(echo_spec.name, b"ping")
    assert first.ok and first.cold_start
    assert first.json()["body"] == "ping"  # type: ignore[index]
    second = platform.invoke(echo_spec.name, b"pong")
    assert second.ok and not second.cold_start


def test_scale_up_down_and_clamp(platform: Platform, echo_spec: FunctionSpec) -> None:
    platform.scale(echo_spec.name, replicas=2)
    wait_until(lambda: platform.status(echo_spec.name).replicas_ready == 2, timeout_s=60)
    platform.scale(echo_spec.name, replicas=10)
    assert platform.status(echo_spec.name).target_replicas == 3
    platform.scale(echo_spec.name, replicas=1)
    wait_until(lambda: platform.status(echo_spec.name).replicas_ready == 1, timeout_s=30)


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


def test_remove(platform: Platform, echo_spec: FunctionSpec) -> None:
    platform.remove(echo_spec.name)
    with pytest.raises(FunctionNotFound):
        platform.status(echo_spec.name)
    assert echo_spec.name not in {s.name for s in platform.list()}
