"""The OpenFaaS CE stack with our provider on the docker runtime: the gateway container joins
the replicas' network, limits change live on the containers, and stopping removes them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.core.config import Limits
from testbed.core.platform import FunctionSpec
from testbed.gateway.runtimes.docker import gateway_id_for
from testbed.gateway.runtimes.images.engine import LABEL_GATEWAY, connect_engine
from tests.openfaas.stackhelp import openfaas_platform

pytestmark = [pytest.mark.openfaas, pytest.mark.docker, pytest.mark.slow]


def test_docker_replicas_behind_the_openfaas_gateway(
    tmp_path: Path, handler_dirs: dict[str, Path]
) -> None:
    spec = FunctionSpec(
        name="echo",
        image="aquatope-of/test-echo:latest",
        handler=str(handler_dirs["echo"]),
        labels={"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "2"},
        limits=Limits(cpu_cores=1.0, memory_mb=128),
    )
    home = tmp_path / "home"
    home.mkdir()
    with openfaas_platform(home, backend="docker") as platform:
        platform.deploy(spec)
        first = platform.invoke("echo", b"hello")
        assert first.ok and first.cold_start and first.json()["body"] == "hello"  # type: ignore[index]
        assert not platform.invoke("echo", b"again").cold_start
        (before,) = [r.container_id for r in platform.status("echo").replicas]
        assert before
        platform.set_limits("echo", Limits(cpu_cores=0.5, memory_mb=192))
        status = platform.status("echo")
        assert status.limits == Limits(cpu_cores=0.5, memory_mb=192) and status.limits_enforced
        assert [r.container_id for r in status.replicas] == [before]  # live, not restarted
    label = f"{LABEL_GATEWAY}={gateway_id_for(home)}"
    client = connect_engine()
    try:
        assert client.containers.list(all=True, filters={"label": label}) == []
        assert client.networks.list(filters={"label": label}) == []
    finally:
        client.close()
