"""The Docker engine connection; the one place where ``docker.errors`` become testbed errors.

Both the image builder and the docker replica runtime talk to the engine through
:func:`connect_engine` and wrap every SDK call in :func:`engine_errors`, so no
``docker`` exception crosses a testbed seam.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from testbed.core.errors import BackendUnavailable, DeployError, PlatformError

if TYPE_CHECKING:
    import docker

__all__ = [
    "ENGINE_HINT",
    "LABEL_FUNCTION",
    "LABEL_GATEWAY",
    "LABEL_MANAGED",
    "LABEL_ROLE",
    "connect_engine",
    "engine_errors",
    "error_line",
]

ENGINE_HINT = (
    "start a Docker engine: `scripts/ensure-docker.sh` (as root: installs Debian's docker.io "
    "and starts dockerd), or `sudo apt-get install -y docker.io && sudo systemctl start docker`"
)

# Labels every object we create carries (containers, networks, images).
LABEL_MANAGED = "io.aquatope.managed"
LABEL_GATEWAY = "io.aquatope.gateway"
LABEL_FUNCTION = "io.aquatope.function"
LABEL_ROLE = "io.aquatope.role"

_MEMORY_REFUSED = re.compile(r"unable to set memory limit to (\d+) \(current usage: (\d+)")


def connect_engine(*, timeout_s: float = 60.0) -> docker.DockerClient:
    """A client of the local Docker engine (``DOCKER_HOST`` or the default socket), pinged once.

    Raises:
        BackendUnavailable: the SDK is missing or no engine answers; the message says how
            to install and start one.
    """
    try:
        import docker
        import docker.errors
    except ImportError:  # pragma: no cover - docker is a declared dependency
        raise BackendUnavailable(
            "the docker backend needs the Docker SDK for Python: pip install 'docker>=7'"
        ) from None
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise BackendUnavailable(
            f"no Docker engine answers ({error_line(exc)}); {ENGINE_HINT}"
        ) from None
    return client


def error_line(exc: BaseException) -> str:
    """The first line of a Docker SDK or transport error (its type name when empty)."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _raise_translated(exc: BaseException, what: str) -> NoReturn:
    import docker.errors
    import requests.exceptions

    message = error_line(exc)
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        raise BackendUnavailable(
            f"{what}: the Docker engine stopped answering ({message}); {ENGINE_HINT}"
        ) from None
    if isinstance(exc, requests.exceptions.Timeout):
        raise BackendUnavailable(f"{what}: the Docker engine timed out ({message})") from None
    match = _MEMORY_REFUSED.search(str(exc))
    if match:
        wanted_mb = int(match.group(1)) / 2**20
        usage_mb = int(match.group(2)) / 2**20
        raise DeployError(
            f"{what}: the kernel refused a memory limit of {wanted_mb:.0f} MiB below the "
            f"current usage of {usage_mb:.0f} MiB; the old limit stays in force"
        ) from None
    if isinstance(exc, docker.errors.ImageNotFound):
        raise DeployError(f"{what}: image not found ({message}); build it with `aquatope build`")
    if isinstance(exc, (docker.errors.APIError, docker.errors.BuildError)):
        raise DeployError(f"{what}: {message}") from None
    raise PlatformError(f"{what}: {message}") from None


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Translate Docker SDK and transport errors raised inside the block.

    Args:
        what: a short description of the operation, prefixed to the message.

    Raises:
        BackendUnavailable: the engine does not answer.
        DeployError: the engine refused (including a memory limit below usage).
        PlatformError: any other Docker SDK error.
    """
    import docker.errors
    import requests.exceptions

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        _raise_translated(exc, what)
