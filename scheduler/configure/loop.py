"""The offline search driver: probe all-max, then ask a configurator and evaluate, to a budget.

The driver owns no I/O of its own: the evaluator it is given does the measuring (a live load
run, the simulator, or a synthetic problem), and progress goes to an optional callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scheduler.configure.base import ConfigSample, Configurator, Measurement, QoSUnreachable
from scheduler.configure.objectives import Constraint, best_feasible, is_feasible
from scheduler.configure.space import Configuration, SearchSpace

__all__ = ["SearchResult", "run_search"]


@dataclass
class SearchResult:
    """The outcome of one search.

    Attributes:
        trials: every evaluated sample, in order (warm-start samples excluded).
        best: cheapest feasible trial (or warm-start sample), None if none met the QoS.
        stop_reason: why the search ended.
        method: the configurator's name.
    """

    trials: list[ConfigSample]
    best: ConfigSample | None
    stop_reason: str
    method: str
    constraints: Sequence[Constraint] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return len(self.trials)

    @property
    def infeasible_trials(self) -> int:
        """Trials that violated a constraint (each one cost real QoS on a live system)."""
        return sum(not is_feasible(s, self.constraints) for s in self.trials)


def run_search(
    configurator: Configurator,
    evaluate: Callable[[Configuration], Measurement],
    *,
    space: SearchSpace,
    constraints: Sequence[Constraint],
    budget: int,
    initial_samples: Sequence[ConfigSample] = (),
    probe: bool = True,
    on_trial: Callable[[int, ConfigSample], None] | None = None,
) -> SearchResult:
    """Run ``configurator`` against ``evaluate`` for at most ``budget`` evaluations.

    Args:
        configurator: proposes configurations.
        evaluate: measures one configuration (an :class:`Evaluator`'s ``evaluate``).
        space: the search space (for the all-max probe and validation).
        constraints: what feasible means.
        budget: maximum evaluations, probe included.
        initial_samples: earlier profiling samples (warm start; not counted in the budget).
        probe: evaluate the all-max configuration first; if it misses the QoS twice, raise.
        on_trial: called with (trial number from 1, sample) after each evaluation.

    Returns:
        A :class:`SearchResult`.

    Raises:
        QoSUnreachable: the probe (all-max) misses the QoS target twice.
        ValueError: budget below 1.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    history: list[ConfigSample] = list(initial_samples)
    trials: list[ConfigSample] = []

    def run(config: Configuration, source: str) -> ConfigSample:
        space.validate(config)
        sample = ConfigSample(config, evaluate(config), source=source)
        history.append(sample)
        trials.append(sample)
        if on_trial is not None:
            on_trial(len(trials), sample)
        return sample

    stop_reason = f"budget of {budget} evaluations used"
    if probe:
        top = space.all_max()
        first = run(top, "probe")
        if not is_feasible(first, constraints) and budget > 1:
            first = run(top, "probe")
        if not is_feasible(first, constraints):
            detail = f" ({first.measurement.detail})" if first.measurement.detail else ""
            raise QoSUnreachable(
                f"QoS cannot be met: even the all-max configuration ({_short(top)}) measured "
                f"{first.latency_s:.3f} s{detail}, above the constraint "
                f"({_describe(constraints)}); loosen the target or speed the functions up"
            )
    while len(trials) < budget:
        config = configurator.propose(history)
        if config is None:
            stop_reason = getattr(configurator, "stop_reason", "") or "configurator stopped"
            break
        run(config, getattr(configurator, "source", configurator.name))
    return SearchResult(
        trials=trials,
        best=best_feasible(history, constraints),
        stop_reason=stop_reason,
        method=configurator.name,
        constraints=list(constraints),
    )


def _short(config: Configuration) -> str:
    first = next(iter(config.items()))[1]
    return f"{len(config.names)} functions at {first}"


def _describe(constraints: Sequence[Constraint]) -> str:
    parts = []
    for c in constraints:
        target = getattr(c, "target_s", None)
        pct = getattr(c, "percentile", 95.0)
        parts.append(f"p{pct:g} <= {target} s" if target is not None else repr(c))
    return ", ".join(parts)
