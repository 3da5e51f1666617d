"""The ``ReplicaRuntime`` seam used *inside* the gateway: how replicas are started and limited.

The gateway (``testbed/gateway``) owns routing, queueing, cold starts and scaling; a
runtime only knows how to start, stop, resize and watch one replica. ``local`` runs
replicas as OS processes, ``docker`` as containers. (The user-facing ``Platform`` for these
backends is the gateway's HTTP API, see ``testbed/backends/openfaas.py``.)
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from testbed.core.config import Limits
from testbed.core.platform import FunctionSpec

__all__ = ["ExitStatus", "LimitsOutcome", "ReplicaHandle", "ReplicaRuntime"]

EXIT_POLL_S = 0.25


@dataclass
class ReplicaHandle:
    """A started replica. ``address`` is the base URL the gateway proxies to."""

    function: str
    replica_id: str
    address: str
    started_at: float
    ready_at: float
    startup_s: float | None = None  # the runner's own report (imports + handler load)
    pid: int | None = None
    container_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LimitsOutcome:
    """What applying limits achieved: ``enforced`` False means advisory only."""

    enforced: bool
    detail: str = ""


@dataclass(frozen=True)
class ExitStatus:
    """Why a replica is gone."""

    oom_killed: bool
    detail: str


class ReplicaRuntime(abc.ABC):
    """Starts, stops, resizes and watches replicas of functions. All methods are async."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    async def start_replica(
        self, spec: FunctionSpec, replica_id: str, limits: Limits
    ) -> ReplicaHandle:
        """Launch one replica with ``limits`` and return once it serves HTTP.

        Raises:
            DeployError: the replica could not be started or did not become ready.
        """

    @abc.abstractmethod
    async def stop_replica(self, handle: ReplicaHandle) -> None:
        """Stop and clean up the replica. Idempotent."""

    @abc.abstractmethod
    async def apply_limits(self, handle: ReplicaHandle, limits: Limits) -> LimitsOutcome:
        """Change limits of a running replica in place (no restart).

        Raises:
            DeployError: the kernel refused (e.g. a memory limit below current usage);
                the old limit stays in force.
        """

    @abc.abstractmethod
    async def exit_status(self, handle: ReplicaHandle) -> ExitStatus | None:
        """``None`` while the replica runs, else why it stopped."""

    def peak_memory_mb(self, handle: ReplicaHandle) -> float | None:
        """Peak resident memory of the replica so far (MB), or None where it cannot be read
        cheaply (it is read on every status listing)."""
        del handle
        return None

    def is_alive(self, handle: ReplicaHandle) -> bool:
        """A cheap synchronous check before each request; ``True`` when unsure.

        Runtimes that can tell in a system call (a child process) override this so that a
        request is never sent to a replica that has already died.
        """
        return True

    async def wait_exit(self, handle: ReplicaHandle) -> ExitStatus:
        """Return once the replica is gone, with why: the gateway's exit notification.

        Runtimes with an exit event (a child process's wait) override this; the default
        polls :meth:`exit_status`.
        """
        while True:
            status = await self.exit_status(handle)
            if status is not None:
                return status
            await asyncio.sleep(EXIT_POLL_S)

    async def adopt_leftovers(self) -> list[ReplicaHandle]:
        """Replicas left by an earlier gateway of this runtime (docker re-adopts by label).

        The default (local processes) has none to adopt: it kills what it recorded instead.
        """
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release runtime resources (not the replicas). Idempotent."""
