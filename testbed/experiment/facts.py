"""Facts saved beside every run: package versions and the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from testbed.core.host import usable_cores

__all__ = ["machine_facts", "package_versions"]

_PACKAGES = (
    "aquatope-testbed",
    "numpy",
    "pandas",
    "scipy",
    "torch",
    "gpytorch",
    "botorch",
    "locust",
    "aiohttp",
    "httpx",
    "matplotlib",
    "docker",
)


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that shape results (absent ones skipped)."""
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        import psutil

        return round(float(psutil.virtual_memory().total) / 2**30, 2)
    except ImportError:
        return None


def machine_facts() -> dict[str, Any]:
    """CPU model, logical cores (and those this process may use), memory, kernel, OS."""
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "hostname": platform.node(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
