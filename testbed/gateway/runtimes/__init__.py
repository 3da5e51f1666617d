"""Replica runtimes: how the gateway starts, stops, limits and watches one replica.

``local`` runs replicas as OS processes (limits through cgroups v1/v2), ``docker`` as
containers (limits through ``container.update()``); the image builder for Docker sits in
:mod:`testbed.gateway.runtimes.images`. Runtimes plug into the gateway only: the user-facing
``Platform`` for these backends is the gateway's HTTP API (:mod:`testbed.backends.openfaas`).
"""

from __future__ import annotations

from pathlib import Path

from testbed.core.errors import ConfigError
from testbed.gateway.runtimes.base import ReplicaRuntime

__all__ = ["RUNTIMES", "ReplicaRuntime", "create_runtime"]

RUNTIMES = ("local", "docker")


def create_runtime(backend: str, state_dir: Path) -> ReplicaRuntime:
    """The one place that maps a backend name to a replica runtime."""
    if backend == "local":
        from testbed.gateway.runtimes.local import LocalRuntime

        return LocalRuntime(state_dir=state_dir)
    if backend == "docker":
        from testbed.gateway.runtimes.docker import DockerRuntime

        return DockerRuntime(state_dir=state_dir)
    raise ConfigError(f"unknown gateway backend {backend!r}; use 'local' or 'docker'")
