"""AWS Lambda Power Tuning as a workflow sizer (baseline).

Power Tuning (alexcasalboni/aws-lambda-power-tuning) runs a function at a list of memory
sizes, with CPU proportional to memory as Lambda allocates it (one vCPU per 1769 MB), and
keeps the cheapest size that meets the target. For a workflow this sizer:

1. sweeps the power levels with every function at the same level (largest first), and
2. with the budget left, lowers one function at a time by one level from the cheapest
   feasible configuration, keeping a step when it still meets the QoS and is cheaper
   (round robin; a function that failed once is left alone).

It minimises ``cost_usd`` subject to the constraints, which it only checks on measurements.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scheduler.configure.base import ConfigSample
from scheduler.configure.objectives import Constraint, best_feasible, is_feasible
from scheduler.configure.space import Configuration, FunctionConfig, SearchSpace

__all__ = ["LAMBDA_MB_PER_VCPU", "POWER_LEVELS_MB", "PowerTuningConfigurator"]

POWER_LEVELS_MB = (128, 256, 512, 1024, 1536, 2048, 3008, 4096, 5120, 6144, 8192, 10240)
LAMBDA_MB_PER_VCPU = 1769.0


class PowerTuningConfigurator:
    """Grid over Lambda-style power levels, then per-function greedy down-sizing.

    Args:
        space: the lattice.
        constraints: feasibility callables (checked on measurements).
        levels_mb: memory sizes to sweep (snapped to the lattice, floored at each need).
        seed: unused (the method is deterministic); accepted for a uniform interface.
    """

    name = "power-tuning"

    def __init__(
        self,
        space: SearchSpace,
        constraints: Sequence[Constraint],
        *,
        levels_mb: Sequence[int] = POWER_LEVELS_MB,
        seed: int = 0,
    ) -> None:
        del seed
        if not levels_mb:
            raise ValueError("levels_mb must not be empty")
        self.space = space
        self.constraints = list(constraints)
        self.levels_mb = sorted(set(levels_mb))
        self.stop_reason = ""
        self.source = "grid"
        self._done: set[str] = set()
        self._turn = 0

    def _at_level(self, name: str, level_mb: int) -> FunctionConfig:
        fs = next(f for f in self.space.functions if f.name == name)
        mem_i = int(np.argmin(np.abs(fs.memory_values - level_mb)))
        memory = int(fs.memory_values[mem_i])
        cpu_i = int(np.argmin(np.abs(fs.cpu_values - memory / LAMBDA_MB_PER_VCPU)))
        return FunctionConfig(float(fs.cpu_values[cpu_i]), memory)

    def _uniform(self, level_mb: int) -> Configuration:
        return Configuration.of({n: self._at_level(n, level_mb) for n in self.space.names})

    def _level_of(self, name: str, cfg: FunctionConfig) -> int:
        dist = [abs(self._at_level(name, lv).memory_mb - cfg.memory_mb) for lv in self.levels_mb]
        return int(np.argmin(dist))

    def propose(self, samples: Sequence[ConfigSample]) -> Configuration | None:
        """Next grid point, then next greedy step; None when every function is settled."""
        tried = {s.config for s in samples}
        for level in reversed(self.levels_mb):
            config = self._uniform(level)
            if config not in tried:
                self.source = "grid"
                return config
        # Phase 2: greedy per-function down-sizing from the incumbent.
        self.source = "greedy"
        last = samples[-1] if samples else None
        best = best_feasible(samples, self.constraints)
        if best is None:
            self.stop_reason = "no power level met the QoS"
            return None
        if last is not None and last.source == "greedy" and not is_feasible(last, self.constraints):
            self._done.add(self._changed_function(last.config, best.config) or "")
        names = self.space.names
        for _ in range(len(names)):
            name = names[self._turn % len(names)]
            self._turn += 1
            if name in self._done:
                continue
            level = self._level_of(name, best.config[name])
            if level == 0:
                self._done.add(name)
                continue
            lower = self._at_level(name, self.levels_mb[level - 1])
            if lower == best.config[name]:
                self._done.add(name)
                continue
            candidate = Configuration.of(
                {n: (lower if n == name else c) for n, c in best.config.items()}
            )
            if candidate in tried:
                self._done.add(name)
                continue
            return candidate
        self.stop_reason = "every function is at its lowest feasible power level"
        return None

    @staticmethod
    def _changed_function(a: Configuration, b: Configuration) -> str | None:
        diff = [n for n, c in a.items() if c != b[n]]
        return diff[0] if len(diff) == 1 else None
