"""Turn a trace and a function-to-workflow mapping into a sorted send schedule (pure).

No I/O, no clock, no Locust: the same inputs and seed always give the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from loadgen.trace import Trace
from testbed.core.errors import ConfigError

__all__ = ["Schedule", "TargetKind", "build_schedule", "map_functions"]

TargetKind = Literal["workflow", "function"]


@dataclass(frozen=True)
class Schedule:
    """Requests to send, in time order.

    Attributes:
        intended_s: float64 array of shape ``(n,)``, sorted: send times from the run's start.
        target: int32 array of shape ``(n,)``: index into ``targets`` of each request.
        source: int32 array of shape ``(n,)``: index into ``sources`` (the trace function).
        targets: concrete workflow (or function) names.
        kinds: ``"workflow"`` or ``"function"`` for each entry of ``targets``.
        sources: trace function names.
        duration_s: the schedule's window length.
    """

    intended_s: np.ndarray
    target: np.ndarray
    source: np.ndarray
    targets: tuple[str, ...]
    kinds: tuple[TargetKind, ...]
    sources: tuple[str, ...]
    duration_s: float

    def __len__(self) -> int:
        return int(self.intended_s.size)

    @property
    def rate_per_s(self) -> float:
        """Mean intended send rate over the window."""
        return len(self) / self.duration_s

    def counts_by_target(self) -> dict[str, int]:
        """Requests per concrete target."""
        counts = np.bincount(self.target, minlength=len(self.targets))
        return {t: int(c) for t, c in zip(self.targets, counts, strict=True)}

    def arrivals_by_target(self) -> dict[str, np.ndarray]:
        """Intended send times (sorted) per concrete target; targets never sent are left out."""
        out: dict[str, np.ndarray] = {}
        for i, name in enumerate(self.targets):
            times = self.intended_s[self.target == i]
            if times.size:
                out[name] = times
        return out

    def rates(self, bin_s: float = 1.0) -> np.ndarray:
        """Intended sends per second in each ``bin_s`` bin, shape ``(ceil(duration/bin_s),)``."""
        bins = max(1, math.ceil(self.duration_s / bin_s - 1e-9))
        idx = np.minimum((self.intended_s // bin_s).astype(np.int64), bins - 1)
        return np.bincount(idx, minlength=bins) / bin_s

    def head(self, duration_s: float) -> Schedule:
        """The first ``duration_s`` seconds of the schedule."""
        if not duration_s > 0:
            raise ConfigError(f"duration must be positive, got {duration_s!r}")
        n = int(np.searchsorted(self.intended_s, duration_s, side="left"))
        return Schedule(
            self.intended_s[:n],
            self.target[:n],
            self.source[:n],
            self.targets,
            self.kinds,
            self.sources,
            min(duration_s, self.duration_s),
        )


def map_functions(
    trace: Trace,
    targets: Sequence[str],
    *,
    top: int | None = None,
    explicit: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map trace functions onto targets (workflows, mixes or functions).

    With ``explicit`` the mapping is taken as given (its keys must be trace functions).
    Otherwise the ``top`` busiest trace functions (default: one per target) are dealt
    round-robin onto ``targets``: the busiest to the first target, and so on.

    Raises:
        ConfigError: no targets, an unknown trace function, or a target not in ``targets``.
    """
    if not targets:
        raise ConfigError("map_functions needs at least one target")
    if explicit is not None:
        unknown = [f for f in explicit if f not in trace.arrivals_s]
        if unknown:
            raise ConfigError(f"mapping names unknown trace function(s): {', '.join(unknown[:5])}")
        bad = [t for t in explicit.values() if t not in targets]
        if bad:
            raise ConfigError(f"mapping names unknown target(s): {', '.join(sorted(set(bad)))}")
        return dict(explicit)
    n = len(targets) if top is None else top
    if n < 1:
        raise ConfigError(f"top must be >= 1, got {n}")
    ranked = trace.by_rate()[:n]
    return {fn: targets[i % len(targets)] for i, fn in enumerate(ranked)}


def build_schedule(
    trace: Trace,
    mapping: Mapping[str, str],
    *,
    mixes: Mapping[str, Mapping[str, float]] | None = None,
    kinds: Mapping[str, TargetKind] | None = None,
    seed: int = 0,
) -> Schedule:
    """Merge the mapped functions' arrivals into one sorted schedule.

    Args:
        trace: the arrivals.
        mapping: trace function -> target; a target may be a mix name in ``mixes``, in which
            case each request picks a concrete workflow by the mix's weights (seeded).
        mixes: mix name -> {workflow: weight}.
        kinds: concrete target -> ``"workflow"`` (default) or ``"function"``.
        seed: seeds the mix draws.

    Returns:
        A :class:`Schedule` over ``trace.duration_s``; ties keep trace-function order.

    Raises:
        ConfigError: the mapping names a function the trace lacks, or a mix has bad weights.
    """
    mixes = mixes or {}
    kinds = kinds or {}
    rng = np.random.default_rng(seed)
    concrete: list[str] = []
    for tgt in dict.fromkeys(mapping.values()):
        for name in mixes.get(tgt, [tgt]):
            if name not in concrete:
                concrete.append(name)
    index = {n: i for i, n in enumerate(concrete)}
    sources = tuple(mapping)
    times: list[np.ndarray] = []
    tgts: list[np.ndarray] = []
    srcs: list[np.ndarray] = []
    for s, (fn, tgt) in enumerate(mapping.items()):
        if fn not in trace.arrivals_s:
            raise ConfigError(f"mapping names unknown trace function {fn!r}")
        arr = trace.arrivals_s[fn]
        if tgt in mixes:
            names = list(mixes[tgt])
            w = np.asarray([mixes[tgt][n] for n in names], dtype=np.float64)
            if w.size == 0 or np.any(w <= 0) or not np.all(np.isfinite(w)):
                raise ConfigError(f"mix {tgt!r}: weights must be positive")
            pick = rng.choice(len(names), size=arr.size, p=w / w.sum())
            t_idx = np.asarray([index[n] for n in names], dtype=np.int32)[pick]
        else:
            t_idx = np.full(arr.size, index[tgt], dtype=np.int32)
        times.append(arr)
        tgts.append(t_idx)
        srcs.append(np.full(arr.size, s, dtype=np.int32))
    if times:
        all_t = np.concatenate(times)
        order = np.argsort(all_t, kind="stable")
        intended = all_t[order]
        target = np.concatenate(tgts)[order]
        source = np.concatenate(srcs)[order]
    else:
        intended = np.zeros(0)
        target = source = np.zeros(0, dtype=np.int32)
    return Schedule(
        intended,
        target.astype(np.int32),
        source.astype(np.int32),
        tuple(concrete),
        tuple(kinds.get(n, "workflow") for n in concrete),
        sources,
        trace.duration_s,
    )
