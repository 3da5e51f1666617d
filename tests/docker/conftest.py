"""Fixtures for the docker backend tests: the engine, a tiny cached test image, runtimes.

Every test here needs a Docker engine (``scripts/ensure-docker.sh`` starts one) and is
marked ``docker``. Images are built once per engine and then found in the cache: the
base (debootstrap when no registry answers) and a stdlib-only probe function.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.core.config import Limits
from testbed.core.errors import BackendUnavailable
from testbed.core.platform import FunctionSpec
from tests.docker.dockerhelp import run
from tests.helpers import missing

PROBE_DIR = Path(__file__).parent / "functions" / "probe"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    from testbed.gateway.runtimes.images.engine import connect_engine

    try:
        client = connect_engine()
    except BackendUnavailable as exc:
        missing(f"tests marked docker need an engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def probe_spec() -> FunctionSpec:
    return FunctionSpec(
        name="probe",
        image="aquatope-test/probe:latest",
        handler=str(PROBE_DIR),
        limits=Limits(cpu_cores=1.0, memory_mb=128),
    )


@pytest.fixture(scope="session")
def probe_image(docker_client: Any, probe_spec: FunctionSpec) -> str:
    """The probe function's image, built on first use and cached by content hash."""
    from testbed.gateway.runtimes.images import ImageBuilder

    builder = ImageBuilder(docker_client, log=print)
    (result,) = builder.build([probe_spec])
    return result.image


@pytest.fixture
def gateway_id() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def runtime(docker_client: Any, probe_image: str, gateway_id: str, tmp_path: Path) -> Iterator[Any]:
    """A DockerRuntime with its own gateway id; everything it made is removed afterwards."""
    from testbed.gateway.runtimes.docker import DockerRuntime, remove_all

    rt = DockerRuntime(state_dir=tmp_path, gateway_id=gateway_id)
    try:
        yield rt
    finally:
        run(rt.close())
        remove_all(gateway_id=gateway_id)
