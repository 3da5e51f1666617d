"""The conditions a profile was measured under, and warnings when they differ from now.

A profile's timings hold for the machine and load they were measured on: on a 2-core host
shared with other work, cold starts and service times move by 2-3x with the load. The profiler
records :func:`current_conditions` at the start and end of a measurement
(``provenance.conditions``); :func:`condition_warnings` compares them with the machine a
profile is used on, and ``load_profile`` / ``aquatope profile`` print what differs.
"""

from __future__ import annotations

import os
import platform as pyplatform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LOAD_PER_CORE_TOLERANCE", "condition_warnings", "cpu_quota_cores", "current_conditions"]

# Load average per core that may differ between profile and use before a warning.
LOAD_PER_CORE_TOLERANCE = 0.5


def cpu_quota_cores(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """This process's cgroup v2 CPU quota in cores (``None``: no quota or not readable)."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return round(float(quota) / float(period), 3)
    except (ValueError, ZeroDivisionError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return pyplatform.processor()


def current_conditions() -> dict[str, Any]:
    """Cores, CPU model, cgroup CPU quota and load average of this machine now."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_quota_cores": cpu_quota_cores(),
        "loadavg": load,
    }


def _load_per_core(conditions: Mapping[str, Any]) -> float | None:
    load = conditions.get("loadavg")
    cores = conditions.get("cpu_count")
    if not load or not isinstance(cores, (int, float)) or cores <= 0:
        return None
    return float(load[0]) / float(cores)


def condition_warnings(
    provenance: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> list[str]:
    """What differs between where a profile was measured and ``current`` (default: now).

    Args:
        provenance: a profile's ``provenance`` (``machine`` and ``conditions`` are read;
            profiles without them give no load warning).
        current: conditions as :func:`current_conditions` returns them.

    Returns:
        One line per difference: core count, CPU model, CPU quota, load per core (beyond
        :data:`LOAD_PER_CORE_TOLERANCE`); empty when they match or nothing is recorded.
    """
    now = dict(current) if current is not None else current_conditions()
    machine = provenance.get("machine")
    machine = machine if isinstance(machine, Mapping) else {}
    measured = provenance.get("conditions")
    measured = measured if isinstance(measured, Mapping) else {}
    before = measured.get("start")
    before = before if isinstance(before, Mapping) else measured
    out: list[str] = []
    cores = before.get("cpu_count", machine.get("cpu_count"))
    if cores and now.get("cpu_count") and cores != now["cpu_count"]:
        out.append(f"profile measured on {cores} cores, this machine has {now['cpu_count']}")
    model = before.get("cpu_model", machine.get("cpu_model"))
    if model and now.get("cpu_model") and model != now["cpu_model"]:
        out.append(f"profile measured on a {model!r} CPU, this machine has {now['cpu_model']!r}")
    if "cpu_quota_cores" in before and before.get("cpu_quota_cores") != now.get("cpu_quota_cores"):
        out.append(
            f"profile measured with a CPU quota of {before.get('cpu_quota_cores')} cores, "
            f"now {now.get('cpu_quota_cores')}"
        )
    loads = [
        x
        for x in (_load_per_core(before), _load_per_core(measured.get("end") or {}))
        if x is not None
    ]
    load_now = _load_per_core(now)
    if loads and load_now is not None:
        load_then = max(loads)
        if abs(load_then - load_now) > LOAD_PER_CORE_TOLERANCE:
            out.append(
                f"profile measured at a load of {load_then:.2f} per core, now {load_now:.2f}: "
                "cold starts and service times scale with the load; re-measure under the "
                "load the simulation stands for"
            )
    return out
