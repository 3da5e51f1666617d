"""A local OpenFaaS-compatible testbed for multi-stage serverless workflows.

Public API::

    import testbed
    with testbed.connect("local") as platform:   # or "docker", "openfaas", "sim"
        platform.deploy(spec)
        platform.invoke("image-processing", b"...")

Exports are loaded lazily so that ``python -m testbed.runner`` (inside every replica)
imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "DeployError",
    "FunctionNotFound",
    "FunctionSpec",
    "FunctionStatus",
    "InvokeResult",
    "LimitNotEnforced",
    "Limits",
    "Platform",
    "PlatformError",
    "QoS",
    "ScaleBounds",
    "TestbedError",
    "Workflow",
    "connect",
]

_LAZY = {
    "BackendUnavailable": "testbed.core.errors",
    "ConfigError": "testbed.core.errors",
    "DeployError": "testbed.core.errors",
    "FunctionNotFound": "testbed.core.errors",
    "LimitNotEnforced": "testbed.core.errors",
    "PlatformError": "testbed.core.errors",
    "TestbedError": "testbed.core.errors",
    "Limits": "testbed.core.config",
    "ScaleBounds": "testbed.core.config",
    "FunctionSpec": "testbed.core.platform",
    "FunctionStatus": "testbed.core.platform",
    "InvokeResult": "testbed.core.platform",
    "Platform": "testbed.core.platform",
    "QoS": "testbed.core.platform",
    "Workflow": "testbed.core.platform",
    "connect": "testbed.backends",
}

if TYPE_CHECKING:
    from testbed.backends import connect
    from testbed.core.config import Limits, ScaleBounds
    from testbed.core.errors import (
        BackendUnavailable,
        ConfigError,
        DeployError,
        FunctionNotFound,
        LimitNotEnforced,
        PlatformError,
        TestbedError,
    )
    from testbed.core.platform import (
        FunctionSpec,
        FunctionStatus,
        InvokeResult,
        Platform,
        QoS,
        Workflow,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
