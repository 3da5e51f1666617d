"""Helpers shared by the docker tests (``from tests.docker.dockerhelp import ...``)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LABEL_GATEWAY", "containers_of", "networks_of", "run"]

T = TypeVar("T")
LABEL_GATEWAY = "io.aquatope.gateway"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion (the runtime's API is async)."""
    return asyncio.run(coro)


def containers_of(client: Any, gateway_id: str) -> list[Any]:
    """Every container (running or not) labelled with ``gateway_id``."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL_GATEWAY}={gateway_id}"})
    return list(found)


def networks_of(client: Any, gateway_id: str) -> list[Any]:
    """Every network labelled with ``gateway_id``."""
    return list(client.networks.list(filters={"label": f"{LABEL_GATEWAY}={gateway_id}"}))
