"""Helpers shared by the benchmark scripts: percentiles, JSON output, isolated state dirs."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["emit", "machine", "percentiles_ms", "temp_home"]


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies given in seconds, in milliseconds (3 decimals)."""
    arr = np.asarray(samples_s, dtype=float) * 1000
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in (50, 95, 99)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()}


def temp_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"aquatope-bench-{prefix}-"))
    os.environ["AQUATOPE_HOME"] = str(home)
    return home


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as one JSON object on the last line."""
    print(json.dumps(figures, sort_keys=True))
