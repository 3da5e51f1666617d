"""Policies for a run, with what some of them are owed: the oracle is given the trace.

A policy class that declares ``needs_arrivals`` (``scheduler.registry.PolicyInfo``) gets the
run's arrival times as its ``arrivals`` parameter, on the daemon's clock. The runner draws each
mix request's workflow before the run (:func:`planned_arrivals`, the same seeded draw the load
generator makes), so the oracle knows which workflow every request calls; arrivals still keyed
by a mix are given to every workflow of the mix. A policy that takes ``service_s_by_function``
(the oracle: where each stage of a workflow is called) gets the profile's mean service times,
one that takes ``cold_s_by_function`` (the oracle, bounding QoS) its p95 cold starts, and
one that takes ``cold_upper_s_by_function`` (the oracle planning starts) their upper bounds
(:func:`profile_estimates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

if TYPE_CHECKING:
    from loadgen.plan import Plan
    from loadgen.trace import Trace
    from scheduler.policy import Policy
    from testbed.core.workflows import WorkflowCatalog
    from testbed.sim.distributions import Distribution
    from testbed.sim.profile import Profile

__all__ = [
    "ProfileEstimates",
    "arrivals_for_policy",
    "create_run_policy",
    "planned_arrivals",
    "profile_estimates",
    "profile_service_s",
    "run_plan",
]


def run_plan(
    trace: Trace, targets: Sequence[str], catalog: WorkflowCatalog | None, *, seed: int
) -> Plan:
    """What a run's client sends: the plan of ``trace`` onto ``targets`` (one trace function
    per target) with the run's seed, which draws each mix request's workflow."""
    from loadgen.plan import plan

    return plan(trace, list(targets), catalog=catalog, mapping={t: t for t in targets}, seed=seed)


def planned_arrivals(
    trace: Trace, targets: Sequence[str], catalog: WorkflowCatalog | None, *, seed: int
) -> dict[str, np.ndarray]:
    """The trace's requests resolved to the concrete workflows the client will call.

    The same plan the replay sends (:func:`run_plan`), so a live run, a simulated run and the
    oracle of either see the same workflow for every request.

    Args:
        trace: the run's arrivals, one trace function per target.
        targets: the run's workflows, mixes or ``function:NAME`` targets.
        catalog: resolves workflows and mixes.
        seed: the run's seed (the load generator's).

    Returns:
        Concrete workflow (or function) name -> sorted send times from the trace's start.
    """
    return run_plan(trace, targets, catalog, seed=seed).schedule.arrivals_by_target()


def arrivals_for_policy(
    arrivals_s: Mapping[str, Any], catalog: WorkflowCatalog | None, *, offset_s: float = 0.0
) -> dict[str, np.ndarray]:
    """Target → times on the daemon clock, mixes expanded into their workflows.

    Args:
        arrivals_s: the trace's ``{target: times from its start}``.
        catalog: resolves mixes (None: targets are taken as they are).
        offset_s: the daemon-clock time of the trace's start (0 on the simulator, the Unix
            time of ``t0`` in live runs).
    """
    out: dict[str, list[np.ndarray]] = {}
    for target, times in arrivals_s.items():
        shifted = np.asarray(times, dtype=np.float64) + offset_s
        for name in _workflows_of(target, catalog):
            out.setdefault(name, []).append(shifted)
    return {name: np.sort(np.concatenate(parts)) for name, parts in out.items()}


def _workflows_of(target: str, catalog: WorkflowCatalog | None) -> list[str]:
    """A mix's workflows, a workflow itself, or a function name as it is."""
    if catalog is None or (target not in catalog.mixes and target not in catalog.workflows):
        return [target]
    return list(catalog.resolve(target).weights)


def create_run_policy(
    name: str,
    params: Mapping[str, Any],
    *,
    arrivals_s: Mapping[str, Any] | None = None,
    catalog: WorkflowCatalog | None = None,
    offset_s: float = 0.0,
    service_s: Mapping[str, float] | None = None,
    cold_s: Mapping[str, float] | None = None,
    cold_upper_s: Mapping[str, float] | None = None,
    host_cores: float | None = None,
) -> Policy:
    """The registered policy ``name``, given the run's arrivals when it declares it needs them
    (and, when it takes ``service_s_by_function`` / ``cold_s_by_function`` /
    ``cold_upper_s_by_function`` / ``host_cores`` and the params do not set them,
    ``service_s`` / ``cold_s`` / ``cold_upper_s``, per function from the simulator's profile,
    and the cores of the host the replicas share).

    Raises:
        KeyError / ValueError / TypeError: as ``scheduler.registry.create_policy``.
    """
    from scheduler.registry import available_policies, create_policy

    chosen = dict(params)
    info = available_policies().get(name)
    if info is not None and info.needs_arrivals and "arrivals" not in chosen:
        chosen["arrivals"] = arrivals_for_policy(arrivals_s or {}, catalog, offset_s=offset_s)
    given_by_param = (
        ("service_s_by_function", service_s),
        ("cold_s_by_function", cold_s),
        ("cold_upper_s_by_function", cold_upper_s),
    )
    for param, given in given_by_param:
        wanted = info is not None and param in info.parameters
        if wanted and given and param not in chosen:
            chosen[param] = dict(given)
    cores = host_cores if host_cores is not None and math.isfinite(host_cores) else None
    takes_cores = info is not None and "host_cores" in info.parameters
    if takes_cores and cores is not None and "host_cores" not in chosen:
        chosen["host_cores"] = float(cores)  # an unlimited host is not given: no limit
    return create_policy(name, chosen)


def profile_service_s(profile: Profile) -> dict[str, float]:
    """Mean service time per function of a simulator profile (seconds)."""
    return {name: fn.service_s.mean_s for name, fn in profile.functions.items()}


class ProfileEstimates(TypedDict):
    """Per-function figures of a profile that :func:`create_run_policy` hands policies."""

    service_s: dict[str, float]  # mean service time (s)
    cold_s: dict[str, float]  # p95 cold start (s)
    cold_upper_s: dict[str, float]  # longest cold start (s): the largest sample, or p99.9


def profile_estimates(profile: Profile) -> ProfileEstimates:
    """What :func:`create_run_policy` hands policies from a profile: ``service_s`` (mean
    service time per function), ``cold_s`` (p95 cold start per function) and
    ``cold_upper_s`` (the longest a start can take: the largest sample of a measured
    distribution, the 99.9th percentile of an unbounded one), seconds."""
    return {
        "service_s": profile_service_s(profile),
        "cold_s": {
            name: fn.cold_start_s.quantile_s(0.95) for name, fn in profile.functions.items()
        },
        "cold_upper_s": {name: _upper_s(fn.cold_start_s) for name, fn in profile.functions.items()},
    }


def _upper_s(dist: Distribution) -> float:
    """The largest value where the distribution has one, else its 99.9th percentile."""
    bounded = dist.kind in ("empirical", "constant")
    return dist.quantile_s(1.0 if bounded else 0.999)
