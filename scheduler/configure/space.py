"""The search space of a workflow-sizing problem: per-function CPU and memory on a lattice.

Every function contributes two dimensions, ``cpu_cores[<function>]`` (0.1 to 6 cores in
steps of 0.1, capped at the machine's cores) and ``memory_mb[<function>]`` (128 to 10240 MB
in steps of 64 MB, floored at what the function needs). A configuration is a point of that
lattice; nothing here ever produces a value between lattice points. Mapping to and from the
paper's [0, 1] box lives in :mod:`scheduler.configure.transform`, not here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from testbed.core.config import Limits
from testbed.core.errors import ConfigError

__all__ = [
    "CPU_MAX_CORES",
    "CPU_MIN_CORES",
    "CPU_STEP_CORES",
    "MEMORY_MAX_MB",
    "MEMORY_MIN_MB",
    "MEMORY_STEP_MB",
    "Configuration",
    "FunctionConfig",
    "FunctionSpace",
    "SearchSpace",
]

CPU_MIN_CORES = 0.1
CPU_MAX_CORES = 6.0
CPU_STEP_CORES = 0.1
MEMORY_MIN_MB = 128
MEMORY_MAX_MB = 10240
MEMORY_STEP_MB = 64


@dataclass(frozen=True, order=True)
class FunctionConfig:
    """CPU and memory of one function's replicas.

    Args:
        cpu_cores: CPU quota per replica, in cores.
        memory_mb: memory limit per replica, in MiB.
    """

    cpu_cores: float
    memory_mb: int

    def __post_init__(self) -> None:
        if not self.cpu_cores > 0 or not self.memory_mb > 0:
            raise ConfigError(f"cpu_cores and memory_mb must be positive, got {self}")

    def to_limits(self) -> Limits:
        """As platform :class:`~testbed.core.config.Limits`."""
        return Limits(cpu_cores=self.cpu_cores, memory_mb=self.memory_mb)

    def __str__(self) -> str:
        return f"{self.cpu_cores:g} cpu / {self.memory_mb} MB"


@dataclass(frozen=True)
class Configuration:
    """A full workflow configuration: one :class:`FunctionConfig` per function, hashable.

    Build it with :meth:`of`; iterate with :meth:`items`.
    """

    functions: tuple[tuple[str, FunctionConfig], ...]

    @classmethod
    def of(cls, mapping: Mapping[str, FunctionConfig]) -> Configuration:
        """From ``{function name: FunctionConfig}`` (order kept)."""
        return cls(tuple(mapping.items()))

    def __getitem__(self, name: str) -> FunctionConfig:
        for fname, cfg in self.functions:
            if fname == name:
                return cfg
        raise KeyError(name)

    def items(self) -> Iterator[tuple[str, FunctionConfig]]:
        return iter(self.functions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.functions)

    def limits(self) -> dict[str, Limits]:
        """``{function: Limits}`` ready for ``Platform.set_limits``."""
        return {name: cfg.to_limits() for name, cfg in self.functions}

    def to_json(self) -> dict[str, dict[str, float]]:
        """``{function: {"cpu_cores": .., "memory_mb": ..}}``."""
        return {
            name: {"cpu_cores": cfg.cpu_cores, "memory_mb": cfg.memory_mb}
            for name, cfg in self.functions
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Mapping[str, float]]) -> Configuration:
        """Inverse of :meth:`to_json`."""
        return cls.of(
            {
                name: FunctionConfig(float(v["cpu_cores"]), int(v["memory_mb"]))
                for name, v in data.items()
            }
        )

    def __str__(self) -> str:
        return ", ".join(f"{name}={cfg}" for name, cfg in self.functions)


@dataclass(frozen=True)
class FunctionSpace:
    """The lattice of one function.

    Args:
        name: function name.
        cpu_min_cores / cpu_max_cores / cpu_step_cores: CPU range and step (cores).
        memory_min_mb / memory_max_mb / memory_step_mb: memory range and step (MiB);
            ``memory_min_mb`` is rounded up to the lattice (128 + k·64).

    Raises:
        ConfigError: empty or inverted ranges.
    """

    name: str
    cpu_min_cores: float = CPU_MIN_CORES
    cpu_max_cores: float = CPU_MAX_CORES
    cpu_step_cores: float = CPU_STEP_CORES
    memory_min_mb: int = MEMORY_MIN_MB
    memory_max_mb: int = MEMORY_MAX_MB
    memory_step_mb: int = MEMORY_STEP_MB
    _cpu: np.ndarray = field(init=False, repr=False, compare=False)
    _memory: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.cpu_step_cores > 0 and self.memory_step_mb > 0):
            raise ConfigError(f"{self.name}: steps must be positive")
        if not 0 < self.cpu_min_cores <= self.cpu_max_cores:
            raise ConfigError(
                f"{self.name}: need 0 < cpu_min_cores <= cpu_max_cores, got "
                f"{self.cpu_min_cores}..{self.cpu_max_cores}"
            )
        if not 0 < self.memory_min_mb <= self.memory_max_mb:
            raise ConfigError(
                f"{self.name}: need 0 < memory_min_mb <= memory_max_mb, got "
                f"{self.memory_min_mb}..{self.memory_max_mb} (does the function need more "
                f"than {self.memory_max_mb} MB?)"
            )
        span = (self.cpu_max_cores - self.cpu_min_cores) / self.cpu_step_cores
        n_cpu = math.floor(span + 1e-9)
        cpu = np.round(self.cpu_min_cores + self.cpu_step_cores * np.arange(n_cpu + 1), 6)
        base = MEMORY_MIN_MB if self.memory_min_mb >= MEMORY_MIN_MB else self.memory_min_mb
        k0 = math.ceil((self.memory_min_mb - base) / self.memory_step_mb - 1e-9)
        k1 = math.floor((self.memory_max_mb - base) / self.memory_step_mb + 1e-9)
        if k1 < k0:
            raise ConfigError(f"{self.name}: no memory lattice value in range")
        memory = base + self.memory_step_mb * np.arange(k0, k1 + 1)
        object.__setattr__(self, "_cpu", cpu)
        object.__setattr__(self, "_memory", memory.astype(np.int64))

    @property
    def cpu_values(self) -> np.ndarray:
        """Allowed CPU values (cores), ascending; shape ``(n_cpu,)``."""
        return self._cpu

    @property
    def memory_values(self) -> np.ndarray:
        """Allowed memory values (MiB), ascending; shape ``(n_memory,)``."""
        return self._memory

    def contains(self, cfg: FunctionConfig) -> bool:
        """Whether ``cfg`` is a lattice point of this function."""
        return bool(
            np.any(np.isclose(self._cpu, cfg.cpu_cores, atol=1e-6))
            and np.any(self._memory == cfg.memory_mb)
        )


class SearchSpace:
    """The product lattice of every function of a workflow: ``2 × n_functions`` dimensions.

    Dimension ``2i`` is ``cpu_cores[f_i]`` and ``2i + 1`` is ``memory_mb[f_i]``.

    Args:
        functions: one :class:`FunctionSpace` per function, in workflow order.

    Raises:
        ConfigError: no functions, or duplicate names.
    """

    def __init__(self, functions: Sequence[FunctionSpace]) -> None:
        if not functions:
            raise ConfigError("a search space needs at least one function")
        names = [f.name for f in functions]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate function names in search space: {names}")
        self.functions: tuple[FunctionSpace, ...] = tuple(functions)

    @classmethod
    def for_functions(
        cls,
        names: Sequence[str],
        *,
        machine_cores: float | None = None,
        memory_need_mb: Mapping[str, int] | None = None,
    ) -> SearchSpace:
        """The paper's space for ``names``, CPU capped at ``machine_cores``, memory floored.

        Args:
            names: function names.
            machine_cores: cores of the machine (caps the 6-core maximum); None = no cap.
            memory_need_mb: per-function memory the function needs to run at all (MiB).
        """
        need = dict(memory_need_mb or {})
        cpu_max = CPU_MAX_CORES if machine_cores is None else min(CPU_MAX_CORES, machine_cores)
        cpu_max = max(CPU_MIN_CORES, math.floor(cpu_max / CPU_STEP_CORES + 1e-9) * CPU_STEP_CORES)
        return cls(
            [
                FunctionSpace(
                    name,
                    cpu_max_cores=round(cpu_max, 6),
                    memory_min_mb=max(MEMORY_MIN_MB, int(need.get(name, MEMORY_MIN_MB))),
                )
                for name in names
            ]
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.functions)

    @property
    def n_dims(self) -> int:
        return 2 * len(self.functions)

    @property
    def dimension_names(self) -> list[str]:
        """``cpu_cores[f]``, ``memory_mb[f]`` for every function, in dimension order."""
        out: list[str] = []
        for f in self.functions:
            out += [f"cpu_cores[{f.name}]", f"memory_mb[{f.name}]"]
        return out

    def values(self, dim: int) -> np.ndarray:
        """Allowed values of dimension ``dim`` (cores or MiB), ascending."""
        f = self.functions[dim // 2]
        return f.cpu_values if dim % 2 == 0 else f.memory_values.astype(float)

    @property
    def groups(self) -> list[list[int]]:
        """Dimension indices per function: ``[[0, 1], [2, 3], ...]``."""
        return [[2 * i, 2 * i + 1] for i in range(len(self.functions))]

    def size(self) -> float:
        """Number of lattice points (a float: it overflows ints quickly)."""
        return float(np.prod([len(self.values(d)) for d in range(self.n_dims)], dtype=float))

    def from_indices(self, idx: Sequence[int]) -> Configuration:
        """The configuration at lattice indices ``idx`` (one per dimension)."""
        if len(idx) != self.n_dims:
            raise ConfigError(f"need {self.n_dims} indices, got {len(idx)}")
        out: dict[str, FunctionConfig] = {}
        for i, f in enumerate(self.functions):
            out[f.name] = FunctionConfig(
                float(f.cpu_values[int(idx[2 * i])]), int(f.memory_values[int(idx[2 * i + 1])])
            )
        return Configuration.of(out)

    def to_indices(self, config: Configuration) -> list[int]:
        """Lattice indices of ``config``. Raises ConfigError off the lattice."""
        self.validate(config)
        idx: list[int] = []
        for f in self.functions:
            cfg = config[f.name]
            idx.append(int(np.argmin(np.abs(f.cpu_values - cfg.cpu_cores))))
            idx.append(int(np.searchsorted(f.memory_values, cfg.memory_mb)))
        return idx

    def validate(self, config: Configuration) -> None:
        """Raise ConfigError unless ``config`` names exactly our functions, on the lattice."""
        if set(config.names) != set(self.names):
            raise ConfigError(
                f"configuration functions {sorted(config.names)} != space {sorted(self.names)}"
            )
        for f in self.functions:
            if not f.contains(config[f.name]):
                raise ConfigError(f"{f.name}: {config[f.name]} is not on the search lattice")

    def all_max(self) -> Configuration:
        """Every function at its largest CPU and memory: the safe, expensive start."""
        return self.from_indices([len(self.values(d)) - 1 for d in range(self.n_dims)])

    def all_min(self) -> Configuration:
        """Every function at its smallest CPU and memory."""
        return self.from_indices([0] * self.n_dims)

    def sample(self, n: int, rng: np.random.Generator) -> list[Configuration]:
        """``n`` configurations drawn uniformly from the lattice."""
        sizes = [len(self.values(d)) for d in range(self.n_dims)]
        return [self.from_indices([int(rng.integers(0, s)) for s in sizes]) for _ in range(n)]

    def __repr__(self) -> str:
        return f"SearchSpace({len(self.functions)} functions, {self.n_dims} dims)"
