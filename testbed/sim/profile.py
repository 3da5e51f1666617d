"""Simulator profiles: measured per-function service/cold-start behaviour, as a JSON data file.

A profile is what ``aquatope profile`` writes and what the simulator samples from; the
simulator itself holds no hand-typed timings. Layout (``schema: aquatope-sim-profile/1``)::

    {
      "schema": "aquatope-sim-profile/1",
      "provenance": {"method": "...", "machine": {...}, "date": "..."},
      "gateway": {"overhead_s": <distribution>},
      "functions": {
        "image-processing": {
          "service_s": <distribution>,            # reference: no CPU limit, one request at a time
          "cpu_scaling": [[0.25, 3.9], [0.5, 2.0], [1.0, 1.0]],   # [cores, service-time factor]
          "concurrency_scaling": [[1, 1.0], [2, 1.9], [4, 3.7]],  # [calls in the replica, factor]
          "memory_scaling": [[256, 1.0]],                         # [memory limit MiB, factor]
          "memory_mb": 212.0,                      # peak memory a replica needs; less -> OOM
          "cold_start_s": <distribution>,          # replica start until it serves (no CPU limit)
          "cold_start_cpu_scaling": [[0.5, 1.8], [1.0, 1.0]],
          "cold_start_cores": 1.15,                # cores a start keeps busy (engine included)
          "idle_scaling": [[0.05, 1.0], [2, 3.1]]  # [s the replica sat idle before, factor]
        }
      }
    }

Scaling tables are medians measured at each level divided by the reference median; between
levels the factor is interpolated linearly in log(level), and held constant outside the
measured range (concurrency beyond the last level grows in proportion, as processor sharing).

``cold_start_cores`` (default 1) is the CPU one replica start keeps busy while it runs: a start
alone on the host takes its ``cold_start_s``; starts that overlap share the cores in proportion
to it. It is fitted from a start storm (many replicas asked for at once,
:func:`testbed.sim.profiler.fit_start_cores`): a container start also keeps the engine busy
(above 1), a light process start waits on I/O (below 1).

``idle_scaling`` (optional, default none) is how much slower a warm call runs after its
replica sat idle for a while (caches, page tables and CPU frequency gone cold on a shared
host: on a 2-core VM object-detection took 4.7 ms right after another call and 16 ms
after 1-3 s idle). It is fitted from live runs' warm stages
(``aquatope profile-from-runs``, :mod:`testbed.sim.warm_samples`); ``service_s`` then holds
the reference at the table's first level.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.core.atomic import atomic_write_json
from testbed.core.errors import ConfigError
from testbed.sim.distributions import Distribution

__all__ = [
    "PROFILE_SCHEMA",
    "FunctionProfile",
    "Profile",
    "default_profile_path",
    "load_profile",
    "save_profile",
    "scaling_factor",
]

PROFILE_SCHEMA = "aquatope-sim-profile/1"

log = logging.getLogger("aquatope.sim")
_checked: set[str] = set()  # profile files whose conditions were already compared (per process)

ScalingTable = tuple[tuple[float, float], ...]


def scaling_factor(
    table: ScalingTable, level: float | None, *, proportional_beyond: bool = False
) -> float:
    """Interpolate a ``[(level, factor), ...]`` table at ``level`` (log-linear in level).

    Args:
        table: rows sorted by level; empty means no effect (factor 1).
        level: the level asked for; ``None`` (unlimited) gives 1.
        proportional_beyond: above the last level, grow the factor in proportion to the
            level (used for concurrency: a full replica shares its CPU between requests).

    Returns:
        The multiplicative factor on the reference time.
    """
    if level is None or not table:
        return 1.0
    if level <= table[0][0]:
        return table[0][1]
    last_level, last_factor = table[-1]
    if level >= last_level:
        return last_factor * level / last_level if proportional_beyond else last_factor
    x = math.log(level)
    for (lo, flo), (hi, fhi) in itertools.pairwise(table):
        if lo <= level <= hi:
            w = (x - math.log(lo)) / (math.log(hi) - math.log(lo))
            return flo + w * (fhi - flo)
    return last_factor  # unreachable for a sorted table


def _table(raw: object, where: str) -> ScalingTable:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ConfigError(f"{where}: a scaling table is a list of [level, factor] pairs")
    rows: list[tuple[float, float]] = []
    for i, row in enumerate(raw):
        if not isinstance(row, Sequence) or len(row) != 2:
            raise ConfigError(f"{where}[{i}]: expected [level, factor]")
        try:
            level, factor = float(row[0]), float(row[1])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}[{i}]: level and factor must be numbers") from None
        if not (level > 0 and factor > 0):
            raise ConfigError(f"{where}[{i}]: level and factor must be positive")
        rows.append((level, factor))
    rows.sort()
    if len({r[0] for r in rows}) != len(rows):
        raise ConfigError(f"{where}: a level appears twice")
    return tuple(rows)


@dataclass(frozen=True)
class FunctionProfile:
    """Measured behaviour of one function (see the module docstring for the fields)."""

    service_s: Distribution
    cold_start_s: Distribution
    memory_mb: float | None = None
    cpu_scaling: ScalingTable = ()
    concurrency_scaling: ScalingTable = ()
    memory_scaling: ScalingTable = ()
    cold_start_cpu_scaling: ScalingTable = ()
    cold_start_cores: float = 1.0
    idle_scaling: ScalingTable = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def service_factor(self, cpu_cores: float | None, memory_mb: float | None) -> float:
        """Service-time factor for a replica's limits, at concurrency 1."""
        return scaling_factor(self.cpu_scaling, cpu_cores) * scaling_factor(
            self.memory_scaling, memory_mb
        )

    def concurrency_factor(self, inflight: int) -> float:
        """Service-time factor when ``inflight`` requests share one replica."""
        return scaling_factor(self.concurrency_scaling, float(inflight), proportional_beyond=True)

    def idle_factor(self, idle_s: float) -> float:
        """Service-time factor for a call on a replica idle ``idle_s`` seconds before it."""
        return scaling_factor(self.idle_scaling, max(idle_s, 0.0))

    def cold_start_factor(self, cpu_cores: float | None) -> float:
        """Cold-start factor for a CPU limit."""
        return scaling_factor(self.cold_start_cpu_scaling, cpu_cores)

    def fits(self, memory_limit_mb: float | None) -> bool:
        """Whether a replica with this memory limit survives a request."""
        return (
            memory_limit_mb is None or self.memory_mb is None or memory_limit_mb >= self.memory_mb
        )

    @classmethod
    def from_json(cls, raw: object, *, where: str) -> FunctionProfile:
        """Parse one function entry. Raises ConfigError naming ``where`` and the field."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: a function profile is an object")
        for required in ("service_s", "cold_start_s"):
            if required not in raw:
                raise ConfigError(f"{where}: missing field {required!r}")
        memory = raw.get("memory_mb")
        if memory is not None and not (isinstance(memory, (int, float)) and memory > 0):
            raise ConfigError(f"{where}.memory_mb: must be a positive number or null")
        known = {
            "service_s",
            "cold_start_s",
            "memory_mb",
            "cpu_scaling",
            "concurrency_scaling",
            "memory_scaling",
            "cold_start_cpu_scaling",
            "cold_start_cores",
            "idle_scaling",
        }
        cores = raw.get("cold_start_cores", 1.0)
        if isinstance(cores, bool) or not (isinstance(cores, (int, float)) and cores > 0):
            raise ConfigError(f"{where}.cold_start_cores: must be a positive number")
        return cls(
            service_s=Distribution.from_json(raw["service_s"], where=f"{where}.service_s"),
            cold_start_s=Distribution.from_json(raw["cold_start_s"], where=f"{where}.cold_start_s"),
            memory_mb=float(memory) if memory is not None else None,
            cpu_scaling=_table(raw.get("cpu_scaling"), f"{where}.cpu_scaling"),
            concurrency_scaling=_table(
                raw.get("concurrency_scaling"), f"{where}.concurrency_scaling"
            ),
            memory_scaling=_table(raw.get("memory_scaling"), f"{where}.memory_scaling"),
            cold_start_cpu_scaling=_table(
                raw.get("cold_start_cpu_scaling"), f"{where}.cold_start_cpu_scaling"
            ),
            cold_start_cores=float(cores),
            idle_scaling=_table(raw.get("idle_scaling"), f"{where}.idle_scaling"),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service_s": self.service_s.to_json(),
            "cold_start_s": self.cold_start_s.to_json(),
            "memory_mb": self.memory_mb,
            "cpu_scaling": [list(r) for r in self.cpu_scaling],
            "concurrency_scaling": [list(r) for r in self.concurrency_scaling],
            "memory_scaling": [list(r) for r in self.memory_scaling],
            "cold_start_cpu_scaling": [list(r) for r in self.cold_start_cpu_scaling],
        }
        if self.cold_start_cores != 1.0:  # profiles without a storm measured stay as they were
            out["cold_start_cores"] = self.cold_start_cores
        if self.idle_scaling:  # (only profiles fitted from live runs have one)
            out["idle_scaling"] = [list(r) for r in self.idle_scaling]
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Profile:
    """A whole profile: gateway overhead and per-function behaviour, plus where it came from.

    Args:
        functions: per-function profiles, keyed by function name.
        gateway_overhead_s: latency the gateway adds to each call (proxy and client).
        provenance: free-form facts: method, machine, date, backend.
        source: the file it was loaded from, if any.
    """

    functions: Mapping[str, FunctionProfile]
    gateway_overhead_s: Distribution = field(default_factory=lambda: Distribution.constant(0.0))
    provenance: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def get(self, name: str) -> FunctionProfile:
        """The profile of function ``name``. Raises ConfigError listing the known ones."""
        try:
            return self.functions[name]
        except KeyError:
            known = ", ".join(sorted(self.functions)) or "none"
            where = f" in {self.source}" if self.source else ""
            raise ConfigError(f"no profile for function {name!r}{where}; known: {known}") from None

    @classmethod
    def from_json(cls, raw: object, *, source: str = "profile") -> Profile:
        """Parse a profile document. Raises ConfigError naming the file and field."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: a profile is a JSON object")
        schema = raw.get("schema")
        if schema != PROFILE_SCHEMA:
            raise ConfigError(f"{source}: schema must be {PROFILE_SCHEMA!r}, got {schema!r}")
        functions = raw.get("functions")
        if not isinstance(functions, Mapping) or not functions:
            raise ConfigError(f"{source}: 'functions' must be a non-empty object")
        gateway = raw.get("gateway") or {}
        if not isinstance(gateway, Mapping):
            raise ConfigError(f"{source}: 'gateway' must be an object")
        overhead = (
            Distribution.from_json(gateway["overhead_s"], where=f"{source}: gateway.overhead_s")
            if "overhead_s" in gateway
            else Distribution.constant(0.0)
        )
        return cls(
            functions={
                str(name): FunctionProfile.from_json(entry, where=f"{source}: functions.{name}")
                for name, entry in functions.items()
            },
            gateway_overhead_s=overhead,
            provenance=dict(raw.get("provenance") or {}),
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": PROFILE_SCHEMA,
            "provenance": dict(self.provenance),
            "gateway": {"overhead_s": self.gateway_overhead_s.to_json()},
            "functions": {name: fp.to_json() for name, fp in sorted(self.functions.items())},
        }


def default_profile_path() -> Path:
    """The profile shipped with the testbed (measured on the reference machine)."""
    return Path(__file__).resolve().parent / "profiles" / "reference.json"


def load_profile(path: str | Path | None = None, *, check_conditions: bool = True) -> Profile:
    """Load a profile file, or the shipped reference profile when ``path`` is None.

    A directory is accepted too: its ``profile.json`` is read (what ``aquatope profile -o DIR``
    writes). With ``check_conditions``, the first load of a file in a process logs a warning
    (logger ``aquatope.sim``) for each way the machine and load it was measured under differ
    from this machine now (:func:`testbed.sim.conditions.condition_warnings`).

    Raises:
        ConfigError: missing file, invalid JSON, or a bad field (the message names it).
    """
    path = Path(path) if path is not None else default_profile_path()
    if path.is_dir():
        path = path / "profile.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such profile file") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    profile = Profile.from_json(raw, source=str(path))
    if check_conditions and str(path) not in _checked:
        from testbed.sim.conditions import condition_warnings

        _checked.add(str(path))
        for line in condition_warnings(profile.provenance):
            log.warning("%s: %s", path, line)
    return profile


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write ``profile`` as JSON atomically (temp file + rename). Returns the path."""
    path = Path(path)
    atomic_write_json(path, profile.to_json(), indent=1)
    return path
