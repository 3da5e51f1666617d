"""Build an experiment's arrivals: the trace for one seed, merged onto the workflows driven.

The result is a :class:`loadgen.trace.Trace` whose function names *are* the targets
(workflows or mixes), so the replay needs no further mapping. The same spec and seed always
give the same arrivals, which is what lets every policy face the identical trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from testbed.core.errors import ConfigError
from testbed.experiment.spec import TraceSpec

if TYPE_CHECKING:
    from loadgen.trace import Trace

__all__ = ["build_trace"]


def _raw_trace(spec: TraceSpec, *, functions: int, seed: int) -> Trace:
    if spec.file is not None:
        from loadgen.traces.azure2019 import read_azure2019_counts

        counts = read_azure2019_counts(spec.file)
        if len(counts.names) > functions:
            counts = counts.subset(top=functions)
    else:
        from loadgen.traces.synthetic import synthesize

        counts = synthesize(
            str(spec.kind),
            functions=functions,
            minutes=spec.minutes,
            seed=seed,
            **dict(spec.options),
        )
    return counts.to_trace(spread=spec.spread, seed=seed)  # type: ignore[arg-type]


def build_trace(
    spec: TraceSpec, targets: tuple[str, ...], *, seed: int, duration_s: float
) -> Trace:
    """The arrivals of one repetition, named by target, cut to ``duration_s``.

    Trace functions are ranked by volume and dealt round-robin onto ``targets`` (busiest to
    the first); functions dealt to the same target are merged.

    Raises:
        ConfigError: the trace is shorter than ``duration_s`` or the generator refuses.
    """
    from loadgen.trace import Trace

    n_functions = spec.functions or len(targets)
    trace = _raw_trace(spec, functions=n_functions, seed=seed)
    if spec.compress != 1.0:
        trace = trace.compress(spec.compress)
    if spec.rate_scale != 1.0:
        trace = trace.scale_rate(spec.rate_scale, seed=seed)
    if trace.duration_s + 1e-9 < duration_s:
        raise ConfigError(
            f"trace lasts {trace.duration_s:g} s (after compression) but duration_s is "
            f"{duration_s:g}; raise trace.minutes or lower trace.compress"
        )
    trace = trace.window(0.0, duration_s)
    ranked = trace.by_rate()
    merged: dict[str, list[np.ndarray]] = {t: [] for t in targets}
    for i, fn in enumerate(ranked):
        merged[targets[i % len(targets)]].append(trace.arrivals_s[fn])
    arrivals = {
        t: np.sort(np.concatenate(parts)) if parts else np.empty(0) for t, parts in merged.items()
    }
    return Trace(arrivals, trace.duration_s, source=f"{trace.source} -> {', '.join(targets)}")
