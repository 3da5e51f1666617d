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
    "BackendUnavailable": "testbed.errors",
    "ConfigError": "testbed.errors",
    "DeployError": "testbed.errors",
    "FunctionNotFound": "testbed.errors",
    "LimitNotEnforced": "testbed.errors",
    "PlatformError": "testbed.errors",
    "TestbedError": "testbed.errors",
    "Limits": "testbed.config",
    "ScaleBounds": "testbed.config",
    "FunctionSpec": "testbed.platform",
    "FunctionStatus": "testbed.platform",
    "InvokeResult": "testbed.platform",
    "Platform": "testbed.platform",
    "QoS": "testbed.platform",
    "Workflow": "testbed.platform",
    "connect": "testbed.backends",
}

if TYPE_CHECKING:
    from testbed.backends import connect
    from testbed.config import Limits, ScaleBounds
    from testbed.errors import (
        BackendUnavailable,
        ConfigError,
        DeployError,
        FunctionNotFound,
        LimitNotEnforced,
        PlatformError,
        TestbedError,
    )
    from testbed.platform import FunctionSpec, FunctionStatus, InvokeResult, Platform, QoS, Workflow


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
