"""The testbed's exception tree.

Every error the testbed raises derives from :class:`TestbedError`; third-party
exceptions (httpx, docker, aiohttp) are translated where they enter::

    TestbedError
    ├── ConfigError            bad stack file, workflow file, trace, CLI value
    └── PlatformError          a backend could not do what was asked
        ├── FunctionNotFound   no function of that name is deployed
        ├── DeployError        a deploy or update was refused
        ├── BackendUnavailable the backend (gateway, Docker engine) does not answer
        ├── LimitNotEnforced   limits are recorded but only advisory
        └── InvocationError    an invocation failed before a response came back
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "DeployError",
    "FunctionNotFound",
    "InvocationError",
    "LimitNotEnforced",
    "PlatformError",
    "TestbedError",
]


class TestbedError(Exception):
    """Root of every error raised by the testbed."""

    __test__ = False  # not a pytest test class


class ConfigError(TestbedError):
    """A configuration file or value is malformed; the message names where."""


class PlatformError(TestbedError):
    """A platform backend failed to carry out a request."""


class FunctionNotFound(PlatformError):
    """The named function is not deployed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"function {name!r} not found")
        self.name = name


class DeployError(PlatformError):
    """A deploy, update or limit change was refused."""


class BackendUnavailable(PlatformError):
    """The backend does not answer (gateway down, Docker engine missing)."""


class LimitNotEnforced(PlatformError):
    """Limits were stored but cannot be enforced on this host (advisory only)."""


class InvocationError(PlatformError):
    """An invocation failed without an HTTP response (timeout, connection reset)."""
