"""Simulated runs: the scheduler daemon driving a :class:`~testbed.sim.platform.SimPlatform`.

The experiment runner's ``backend: sim`` path and library users (benches, notebooks) go
through here. The simulator itself stays an engine plus its Platform and never imports the
scheduler; this module, like the rest of ``testbed/experiment``, is a composition root.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.core.atomic import atomic_write_json
from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec, Workflow
from testbed.sim.engine import normalise_arrivals
from testbed.sim.platform import SimPlatform, SimResults
from testbed.sim.profile import Profile

if TYPE_CHECKING:
    from scheduler.policy import Policy

__all__ = [
    "build_sim",
    "default_specs",
    "end_of_trace_s",
    "run_simulation",
    "sim_facts",
    "simulate",
]

DECISIONS_FILE = "decisions.jsonl"


def build_sim(
    options: Mapping[str, Any] | None, *, seed: int, workflows: Any = None
) -> SimPlatform:
    """A fresh simulator from a config mapping (``profile`` path or object, other options).

    Raises:
        ConfigError: ``profile`` is neither a path nor a :class:`Profile`.
    """
    config = dict(options or {})
    config.pop("backend", None)
    profile = config.pop("profile", None)
    if profile is not None and not isinstance(profile, (Profile, str, Path)):
        raise ConfigError(f"platform.profile must be a path, got {type(profile).__name__}")
    return SimPlatform(profile, seed=seed, workflows=workflows, **config)


def simulate(
    sim: SimPlatform,
    arrivals: object,
    policy: Policy | None,
    *,
    tick_s: float = 1.0,
    until_s: float | None = None,
    decisions_path: Path | None = None,
    policy_name: str = "",
    t0_s: float | None = None,
    workflows: Mapping[str, Workflow] | None = None,
    log_every_decision: bool = False,
    drain_s: float | None = None,
) -> SimResults:
    """Replay ``arrivals`` on ``sim`` with ``policy`` deciding every ``tick_s`` simulated seconds.

    Args:
        sim: a simulator with the functions already deployed.
        arrivals: ``{target: times_s}``, a ``loadgen.trace.Trace`` or ``(t_s, target)`` pairs.
        policy: the policy the real daemon runs, or None (only the platform acts).
        tick_s: the daemon's tick in simulated seconds.
        until_s: end of the run (default: the last arrival, rounded up to a tick).
        decisions_path: where the daemon logs its decisions (None: not logged).
        policy_name: the name written in the decision log.
        t0_s: time the decision log's ``t_s`` is relative to (default: the clock now); a
            run whose daemon starts before the traffic (``settle_s``) passes 0, as live.
        workflows: the workflows the daemon tells the policy about (default: every workflow
            the simulator knows); an experiment passes its own, as its live daemon sees them.
        log_every_decision: log every function every tick, not only changes.
        drain_s: end the run as a live replay does (:meth:`SimPlatform.run_trace`): the
            daemon ticks on while requests are in flight, at most ``drain_s`` after the
            last arrival, then what is left is cancelled; None runs every request to its
            end with no more ticks.

    Returns:
        The run's rows as DataFrames.
    """
    pairs = dict(normalise_arrivals(arrivals))
    horizon = until_s if until_s is not None else end_of_trace_s(pairs, tick_s=tick_s)
    on_tick = None
    if policy is not None:
        from scheduler.daemon import Daemon

        daemon = Daemon(
            sim,
            policy,
            clock=sim.clock,
            tick_s=tick_s,
            workflows=sim.workflows if workflows is None else workflows,
            decisions_path=decisions_path,
            policy_name=policy_name or getattr(policy, "name", "") or type(policy).__name__,
            t0_s=sim.now if t0_s is None else t0_s,
            log_every_decision=log_every_decision,
        )

        def on_tick(_now_s: float) -> None:
            daemon.tick()

    results = sim.run_trace(pairs, horizon, tick_s=tick_s, on_tick=on_tick, drain_s=drain_s)
    if decisions_path is not None and not decisions_path.exists():
        decisions_path.write_text("")
    return results


def end_of_trace_s(arrivals: Mapping[str, Any], *, tick_s: float) -> float:
    """The last arrival of ``{target: times_s}``, rounded up to the next tick."""
    last = max((float(max(t)) for t in arrivals.values() if len(t)), default=0.0)
    return (int(last / tick_s) + 1) * tick_s


def sim_facts(
    sim: SimPlatform, results: SimResults, *, wall_s: float, cpu_s: float
) -> dict[str, Any]:
    """What a run's ``meta.json`` says about the simulator that produced it (``cpu_s``: the
    CPU time the simulation took in its process, the work, where ``wall_s`` counts waits)."""
    return {
        "profile": sim.profile.source or "in-memory",
        "profile_provenance": dict(sim.profile.provenance),
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "requests": len(results.requests),
    }


def default_specs(sim: SimPlatform, targets: Iterable[str]) -> list[FunctionSpec]:
    """One default spec per function that ``targets`` (workflows, mixes, functions) call."""
    names: dict[str, None] = {}
    for target in sorted(targets):
        concrete = sim.mix_workflows(target) if target in sim.mixes else [target]
        for name in concrete:
            if name in sim.workflows:
                names.update(dict.fromkeys(sim.workflows[name].functions))
            else:
                names[name] = None
    return [FunctionSpec(name=n) for n in names]


def run_simulation(
    platform_config: Mapping[str, Any] | None,
    workflows: Any,
    arrivals: object,
    policy: Policy | str | None,
    *,
    tick_s: float = 1.0,
    seed: int = 0,
    results_dir: str | Path | None = None,
    until_s: float | None = None,
    functions: Iterable[FunctionSpec] | None = None,
    policy_params: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> SimResults:
    """One policy on one trace in a fresh simulator, optionally written as a results directory.

    Args:
        platform_config: :class:`SimPlatform` keyword arguments, e.g.
            ``{"profile": "path/profile.json", "invoke_timeout_s": 120}``.
        workflows: a ``WorkflowCatalog``, mapping or iterable of workflows and mixes; None
            registers the shipped workflows.
        arrivals: ``{target: times_s}``, a ``Trace`` or ``(t_s, target)`` pairs.
        policy: a ``Policy``, a registered policy name, or None (no scheduler).
        tick_s: the daemon's tick in simulated seconds.
        seed: seeds the simulator's random streams (same seed, same results).
        results_dir: where to write requests/stages/timeline CSVs and decisions.jsonl (and
            meta.json when ``meta`` is given); None writes nothing.
        until_s: end of the run (default: the last arrival, rounded up to a tick).
        functions: specs to deploy; default one spec per function the trace's targets call.
        policy_params: parameters when ``policy`` is a name.
        meta: written to ``meta.json`` with the simulator's facts and ``complete: true``.

    Raises:
        ConfigError: unknown policy or trace target, or a function without a profile.
    """
    sim = build_sim(platform_config, seed=seed, workflows=workflows)
    pairs = dict(normalise_arrivals(arrivals))
    for spec in functions if functions is not None else default_specs(sim, pairs):
        sim.deploy(spec)
    horizon = until_s if until_s is not None else end_of_trace_s(pairs, tick_s=tick_s)
    policy_name = "none"
    if isinstance(policy, str):
        from testbed.experiment.policies import create_run_policy, profile_estimates

        policy_name = policy
        try:
            by_workflow: dict[str, list[Any]] = {}
            for target, times in pairs.items():
                concrete = sim.mix_workflows(target) if target in sim.mixes else [target]
                for name in concrete:
                    by_workflow.setdefault(name, []).extend(times)
            policy = create_run_policy(
                policy,
                dict(policy_params or {}),
                arrivals_s=by_workflow,
                host_cores=sim.host_cores,
                **profile_estimates(sim.profile),
            )
        except (KeyError, ValueError) as exc:
            raise ConfigError(str(exc).strip("'\"")) from None
    elif policy is not None:
        policy_name = getattr(policy, "name", "") or type(policy).__name__
    out = Path(results_dir) if results_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    results = simulate(
        sim,
        pairs,
        policy,
        tick_s=tick_s,
        until_s=horizon,
        decisions_path=out / DECISIONS_FILE if out is not None else None,
        policy_name=policy_name,
    )
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    if out is not None:
        results.write(out)
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
                    "sim": sim_facts(sim, results, wall_s=wall_s, cpu_s=cpu_s),
                    "complete": True,
                },
            )
    return results
