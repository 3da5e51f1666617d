"""One simulated experiment run, end to end: trace → sim → daemon ticks → results directory.

This is the ``backend: sim`` path of the experiment runner: the same policy objects and the
same scheduler daemon (``scheduler.daemon.Daemon``) as live runs, driven by the simulator's
clock. Like ``testbed/experiment``, it is a composition root, so it may import ``scheduler``
(lazily, inside :func:`run_experiment`).
"""

from __future__ import annotations

import platform as pyplatform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from testbed.core.atomic import atomic_write_json
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec
from testbed.sim.platform import SimPlatform, SimResults
from testbed.sim.profile import Profile

__all__ = ["run_experiment", "run_sim"]


def _specs(
    functions: Iterable[FunctionSpec] | Any | None, sim: SimPlatform, targets: Iterable[str]
) -> list[FunctionSpec]:
    """The given specs, or one default spec per function the trace's targets call."""
    if functions is not None:
        return list(functions)
    workflows = sim.workflows
    names: dict[str, None] = {}
    for target in sorted(targets):
        concrete = sim.mix_workflows(target) if target in sim.mixes else [target]
        for name in concrete:
            if name in workflows:
                names.update(dict.fromkeys(workflows[name].functions))
            else:
                names[name] = None
    return [FunctionSpec(name=n) for n in names]


def run_experiment(
    platform_config: Mapping[str, Any] | None,
    workflows: Any,
    arrivals: Any,
    policy: Any,
    *,
    tick_s: float = 1.0,
    seed: int = 0,
    results_dir: str | Path | None = None,
    until_s: float | None = None,
    functions: Iterable[FunctionSpec] | Any | None = None,
    policy_params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> SimResults:
    """Run one policy on one trace in the simulator and write the results directory.

    Args:
        platform_config: :class:`SimPlatform` keyword arguments, e.g.
            ``{"profile": "path/profile.json", "function_profiles": {...},
            "invoke_timeout_s": 120}`` (``seed`` and ``workflows`` come from the arguments).
        workflows: a ``WorkflowCatalog`` (``load_workflows()``), mapping or iterable of
            workflows and mixes; None registers the shipped workflows.
        arrivals: ``{target: times_s}`` or ``(t_s, target)`` pairs, targets being workflow,
            mix or function names; times are seconds from the start of the run.
        policy: a ``scheduler.policy.Policy`` instance, a registered policy name, or None
            (no scheduler: only the gateway's scale-from-zero acts).
        tick_s: the daemon's tick in simulated seconds.
        seed: seeds the simulator's random streams (same seed, same results).
        results_dir: where to write requests.csv, stages.csv, timeline.csv,
            decisions.jsonl (and meta.json when ``meta`` is given); None writes nothing.
        until_s: end of the run (default: the last arrival, rounded up to a tick).
        functions: ``FunctionSpec``s (or a ``Stack``) to deploy; default one spec per
            function that the trace's targets call, with default limits.
        policy_params: parameters when ``policy`` is a name.
        meta: written to ``meta.json`` with the sim's facts added and ``complete`` true.

    Returns:
        The run's rows as DataFrames.

    Raises:
        ConfigError: unknown policy, unknown trace target, or a function without a profile.
    """
    config = dict(platform_config or {})
    config.pop("backend", None)
    profile = config.pop("profile", None)
    if profile is not None and not isinstance(profile, (Profile, str, Path)):
        raise ConfigError(f"platform.profile must be a path, got {type(profile).__name__}")
    sim = SimPlatform(profile, seed=seed, workflows=workflows, **config)
    from testbed.sim.engine import normalise_arrivals

    pairs = list(normalise_arrivals(arrivals))
    for spec in _specs(functions, sim, {name for name, _ in pairs}):
        sim.deploy(spec)
    horizon = until_s
    if horizon is None:
        last = max((float(t.max()) for _, t in pairs if len(t)), default=0.0)
        horizon = (int(last / tick_s) + 1) * tick_s
    out = Path(results_dir) if results_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    on_tick = None
    policy_name = "none"
    if policy is not None:
        from scheduler.daemon import Daemon
        from scheduler.registry import create_policy

        if isinstance(policy, str):
            policy_name = policy
            try:
                policy = create_policy(policy, dict(policy_params or {}))
            except (KeyError, ValueError) as exc:
                raise ConfigError(str(exc).strip("'\"")) from None
        else:
            policy_name = getattr(policy, "name", "") or type(policy).__name__
        daemon = Daemon(
            sim,
            policy,
            clock=sim.clock,
            tick_s=tick_s,
            workflows=sim.workflows,
            decisions_path=out / "decisions.jsonl" if out is not None else None,
            policy_name=policy_name,
            t0_s=sim.now,
        )

        def on_tick(_now_s: float) -> None:
            daemon.tick()

    started = time.perf_counter()
    results = sim.run_trace(dict(pairs), horizon, tick_s=tick_s, on_tick=on_tick)
    wall_s = time.perf_counter() - started
    if out is not None:
        results.write(out)
        if not (out / "decisions.jsonl").exists():
            (out / "decisions.jsonl").write_text("")
        if meta is not None:
            atomic_write_json(
                out / "meta.json",
                {
                    **dict(meta),
                    "backend": "sim",
                    "policy": policy_name,
                    "seed": seed,
                    "t0": 0.0,
                    "clock": "simulated",
                    "duration_s": horizon,
                    "tick_s": tick_s,
                    "sim": {
                        "profile": sim.profile.source or "in-memory",
                        "profile_provenance": dict(sim.profile.provenance),
                        "wall_s": round(wall_s, 3),
                        "requests": len(results.requests),
                    },
                    "machine": {"python": pyplatform.python_version(), "node": pyplatform.node()},
                    "complete": True,
                },
            )
    return results


def run_sim(
    *,
    spec: Any,
    policy: Any,
    seed: int,
    trace: Any,
    workflows: Mapping[str, Any] | None = None,
    results_dir: str | Path,
) -> dict[str, Any]:
    """The experiment runner's ``backend: sim`` hook (``testbed/experiment/run.py``).

    Args:
        spec: the ``ExperimentSpec``; ``backend_options`` are :class:`SimPlatform` options
            (``profile``, ``function_profiles``, ``invoke_timeout_s``); functions are
            deployed from ``spec.stack`` (its limits apply) when the file exists.
        policy: the ``PolicySpec`` (registry ``name`` and ``params``).
        seed: the run's seed (also seeds the simulator).
        trace: the ``loadgen.trace.Trace`` whose names are workflows or mixes.
        workflows: ignored beyond a check; every workflow and mix of
            ``spec.workflows_dir`` is registered so mixes resolve.
        results_dir: the run directory to write requests/stages/timeline/decisions into.

    Returns:
        Facts to merge into ``meta.json`` (``requests``, ``t0``, ``clock``, ``sim``).
    """
    from testbed.core.workflows import load_workflows

    catalog = load_workflows(getattr(spec, "workflows_dir", None))
    names: list[str] = []
    for target in getattr(trace, "arrivals_s", {}) or {}:
        mix = catalog.resolve(target)
        for wf in mix.weights:
            names.extend(catalog.get(wf).functions)
    for wf in (workflows or {}).values():
        names.extend(wf.functions)
    names = list(dict.fromkeys(names))
    specs: list[FunctionSpec] | None = None
    stack_path = getattr(spec, "stack", None)
    if stack_path is not None and Path(stack_path).is_file():
        from testbed.core.stack import load_stack

        stack = load_stack(stack_path)
        specs = [stack[n] if n in stack.functions else FunctionSpec(name=n) for n in names]
    started = time.perf_counter()
    results = run_experiment(
        dict(getattr(spec, "backend_options", {}) or {}),
        catalog,
        trace,
        policy.name,
        policy_params=dict(policy.params),
        tick_s=float(getattr(spec, "tick_s", 1.0)),
        seed=seed,
        results_dir=results_dir,
        until_s=float(getattr(spec, "duration_s", 0.0)) or None,
        functions=specs if specs is not None else [FunctionSpec(name=n) for n in names],
    )
    return {
        "requests": len(results.requests),
        "t0": 0.0,
        "clock": "simulated",
        "sim": {"wall_s": round(time.perf_counter() - started, 3), "seed": seed},
    }
