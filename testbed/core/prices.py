"""Prices: the one definition of what a second of CPU and memory costs (DESIGN.md §8).

Two models, both charged on resources *reserved* for every replica alive, busy or idle:

* decoupled: ``cpu_core_s × 0.000024 + GiB_s × 0.0000025`` USD;
* Lambda-style: ``GB_s × 0.0000166667 + 0.20`` USD per million invocations.

Reports (``testbed.report.cost``), configurators and their synthetic problems all read these.
"""

from __future__ import annotations

__all__ = [
    "CPU_USD_PER_CORE_S",
    "LAMBDA_USD_PER_GB_S",
    "LAMBDA_USD_PER_REQUEST",
    "MEMORY_USD_PER_GIB_S",
    "decoupled_usd_per_s",
]

CPU_USD_PER_CORE_S = 0.000024
MEMORY_USD_PER_GIB_S = 0.0000025
LAMBDA_USD_PER_GB_S = 0.0000166667
LAMBDA_USD_PER_REQUEST = 0.20 / 1_000_000


def decoupled_usd_per_s(cpu_cores: float, memory_mb: float) -> float:
    """USD per second of one replica reserving ``cpu_cores`` and ``memory_mb`` (decoupled)."""
    return cpu_cores * CPU_USD_PER_CORE_S + memory_mb / 1024.0 * MEMORY_USD_PER_GIB_S
