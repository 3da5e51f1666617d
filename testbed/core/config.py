"""Small validated value objects shared by every layer: limits, scale bounds, gateway settings."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from testbed.core.errors import ConfigError

__all__ = [
    "DEFAULT_GATEWAY_PORT",
    "DEFAULT_HOST",
    "DEFAULT_MAX_ASYNC_PENDING",
    "DEFAULT_MAX_BODY_MB",
    "DEFAULT_MAX_INFLIGHT",
    "DEFAULT_MAX_REPLICAS",
    "DEFAULT_SCALE_MAX",
    "GatewayConfig",
    "Limits",
    "ScaleBounds",
    "aquatope_home",
    "parse_cpu",
    "parse_memory_mb",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_SCALE_MAX = 20
DEFAULT_MAX_REPLICAS = 64  # platform cap on com.openfaas.scale.max per function
DEFAULT_MAX_BODY_MB = 32  # request bodies the gateway accepts (function and async routes)
DEFAULT_MAX_ASYNC_PENDING = 256  # queued /async-function calls before 429
DEFAULT_MAX_INFLIGHT = 1
DEFAULT_COLD_START_TIMEOUT_S = 60.0
DEFAULT_INVOKE_TIMEOUT_S = 120.0
MAX_MEMORY_MB = 2**40  # a sanity bound for parsing (1 EiB); machines bound it further

_MEMORY_UNITS = {
    "": 1 / (1024 * 1024),
    "k": 1000 / (1024 * 1024),
    "ki": 1 / 1024,
    "m": 1_000_000 / (1024 * 1024),
    "mi": 1.0,
    "g": 1_000_000_000 / (1024 * 1024),
    "gi": 1024.0,
}
_MEMORY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]i?)?\s*$")


def parse_memory_mb(value: str | int | float) -> int:
    """Parse a Kubernetes/OpenFaaS memory quantity ("128M", "1Gi", "512Mi") into MiB.

    Plain numbers are taken as MiB. OpenFaaS writes "128M" meaning 128 MiB in practice,
    so decimal "M" and "G" are treated like their binary twins, as faas-netes does for
    docker-style limits.

    Raises:
        ConfigError: the value is not a memory quantity.
    """
    if isinstance(value, bool):
        raise ConfigError(f"memory must be a quantity like '128M', got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value > MAX_MEMORY_MB:
            raise ConfigError(f"memory must be a finite number of MiB, got {value!r}")
        if value <= 0:
            raise ConfigError(f"memory must be positive, got {value!r}")
        return int(value)
    match = _MEMORY_RE.match(str(value))
    if not match:
        raise ConfigError(f"memory must be a quantity like '128M' or '1Gi', got {_short(value)}")
    number = float(match.group(1))
    unit = (match.group(2) or "m").lower()
    if unit in ("m", "g"):
        unit += "i"
    mb = number * _MEMORY_UNITS[unit]
    if not math.isfinite(mb) or mb > MAX_MEMORY_MB:
        raise ConfigError(f"memory {_short(value)} is too large")
    if mb < 1:
        raise ConfigError(f"memory {value!r} is below 1 MiB")
    return round(mb)


def parse_cpu(value: str | int | float) -> float:
    """Parse a CPU quantity ("0.5", "500m", 2) into cores.

    Raises:
        ConfigError: the value is not a positive CPU quantity.
    """
    if isinstance(value, bool):
        raise ConfigError(f"cpu must be a number of cores like '0.5' or '500m', got {value!r}")
    text = str(value).strip()
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"cpu must be a number of cores like '0.5' or '500m', got {_short(value)}"
        ) from None
    if not math.isfinite(cores):
        raise ConfigError(f"cpu must be a finite number of cores, got {_short(value)}")
    if not cores > 0:
        raise ConfigError(f"cpu must be positive, got {value!r}")
    return cores


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut so that a hostile value cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Limits:
    """Per-replica resource limits. ``None`` means unlimited.

    Args:
        cpu_cores: CPU quota in cores (0.5 = half a core).
        memory_mb: memory limit in MiB.
    """

    cpu_cores: float | None = None
    memory_mb: int | None = None

    def __post_init__(self) -> None:
        if self.cpu_cores is not None and not (
            self.cpu_cores > 0 and math.isfinite(self.cpu_cores)
        ):
            raise ConfigError(f"cpu_cores must be positive and finite, got {self.cpu_cores!r}")
        if self.memory_mb is not None and not self.memory_mb > 0:
            raise ConfigError(f"memory_mb must be positive, got {self.memory_mb!r}")

    @classmethod
    def from_openfaas(cls, body: dict[str, object] | None, *, where: str = "limits") -> Limits:
        """Build from an OpenFaaS ``{"cpu": "0.5", "memory": "128M"}`` object."""
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise ConfigError(f"{where} must be an object like {{'cpu': '0.5', 'memory': '128M'}}")
        unknown = set(body) - {"cpu", "memory"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        cpu_raw, mem_raw = body.get("cpu"), body.get("memory")
        for name, raw in (("cpu", cpu_raw), ("memory", mem_raw)):
            if raw is not None and not isinstance(raw, (str, int, float)):
                raise ConfigError(f"{where}.{name}: expected a string or number, got {raw!r}")
        try:
            cpu = parse_cpu(cpu_raw) if cpu_raw not in (None, "") else None  # type: ignore[arg-type]
            mem = parse_memory_mb(mem_raw) if mem_raw not in (None, "") else None  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return cls(cpu_cores=cpu, memory_mb=mem)

    def to_openfaas(self) -> dict[str, str]:
        """Render as an OpenFaaS limits object (empty fields omitted)."""
        out: dict[str, str] = {}
        if self.cpu_cores is not None:
            out["cpu"] = f"{self.cpu_cores:g}"
        if self.memory_mb is not None:
            out["memory"] = f"{self.memory_mb}Mi"
        return out

    def merged(self, other: Limits) -> Limits:
        """Fields of ``other`` that are set override ours."""
        return Limits(
            cpu_cores=other.cpu_cores if other.cpu_cores is not None else self.cpu_cores,
            memory_mb=other.memory_mb if other.memory_mb is not None else self.memory_mb,
        )


@dataclass(frozen=True)
class ScaleBounds:
    """Replica bounds from the ``com.openfaas.scale.min/max`` labels."""

    min: int = 0
    max: int = DEFAULT_SCALE_MAX

    def __post_init__(self) -> None:
        if self.min < 0 or self.max < 1 or self.min > self.max:
            raise ConfigError(f"scale bounds need 0 <= min <= max and max >= 1, got {self}")

    def clamp(self, replicas: int) -> int:
        return max(self.min, min(self.max, replicas))


def aquatope_home() -> Path:
    """``$AQUATOPE_HOME`` or ``~/.aquatope``: state, passwords, caches."""
    return Path(os.environ.get("AQUATOPE_HOME") or Path.home() / ".aquatope")


@dataclass(frozen=True)
class GatewayConfig:
    """Settings of one gateway process."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_GATEWAY_PORT
    backend: str = "local"
    cold_start_timeout_s: float = DEFAULT_COLD_START_TIMEOUT_S
    invoke_timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S
    state_dir: Path = field(default_factory=aquatope_home)
    workflows_dir: Path | None = None
    max_body_mb: int = DEFAULT_MAX_BODY_MB
    max_replicas: int = DEFAULT_MAX_REPLICAS
    max_async_pending: int = DEFAULT_MAX_ASYNC_PENDING

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        for name in ("max_body_mb", "max_replicas", "max_async_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
