"""click parameter types that validate at the edge: memory, CPU and durations."""

from __future__ import annotations

import re
from typing import Any

import click

from testbed.core.config import parse_cpu, parse_memory_mb
from testbed.core.errors import ConfigError

__all__ = ["CPU", "DURATION", "MEMORY", "CpuType", "DurationType", "MemoryType", "parse_duration_s"]


class MemoryType(click.ParamType):  # type: ignore[type-arg]
    """'128M', '1Gi', '512' (MiB) → int MiB."""

    name = "memory"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_memory_mb(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class CpuType(click.ParamType):  # type: ignore[type-arg]
    """'0.5', '500m', '2' → float cores."""

    name = "cpu"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_cpu(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(value: str | float) -> float:
    """'90s', '10m', '1.5h', '250ms' or a number of seconds → seconds.

    Raises:
        ConfigError: not a duration.
    """
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"duration must be >= 0, got {value}")
        return float(value)
    match = _DURATION_RE.match(value)
    if not match:
        raise ConfigError(f"expected a duration like '90s', '10m' or '1h', got {value!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2) or "s"]


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """'10m', '90s', '1h' → float seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            return parse_duration_s(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


MEMORY = MemoryType()
CPU = CpuType()
DURATION = DurationType()
