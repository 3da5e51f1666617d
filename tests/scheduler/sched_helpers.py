"""Helpers shared by the scheduler tests: build observations tick by tick."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scheduler.policy import Decision, FunctionObservation, Observation, Policy
from testbed.core.platform import QoS, Stage, Workflow

__all__ = [
    "LONG_THEN_BRANCHES_SERVICE_S",
    "first_video_decision",
    "fobs",
    "long_then_branches",
    "obs",
    "replicas_at",
    "sim_runs_by_label",
    "step",
]

# mean service times of :func:`long_then_branches`' functions (seconds)
LONG_THEN_BRANCHES_SERVICE_S = {"long": 2.0, "x": 3.0, "y": 0.5, "join": 0.1}


def long_then_branches(target_s: float = 9.0) -> Workflow:
    """Workflow ``w``: a 2 s stage ``long``, then ``x`` (3 s) and ``y`` (0.5 s) side by side,
    then ``join`` (0.1 s); each stage calls the function of its own name."""
    return Workflow(
        name="w",
        qos=QoS(target_s=target_s),
        stages=(
            Stage("long", "long"),
            Stage("x", "x", after=("long",)),
            Stage("y", "y", after=("long",)),
            Stage("join", "join", after=("x", "y")),
        ),
    )


def fobs(name: str = "f", **kw: Any) -> FunctionObservation:
    """A function observation with defaults (one ready replica unless told otherwise)."""
    kw.setdefault("replicas_ready", 1)
    kw.setdefault("target_replicas", kw["replicas_ready"])
    return FunctionObservation(name=name, **kw)


def obs(now_s: float, fns: Mapping[str, FunctionObservation], tick_s: float = 1.0) -> Observation:
    return Observation(now_s=now_s, tick_s=tick_s, functions=dict(fns))


def step(policy: Policy, now_s: float, tick_s: float = 1.0, **kw: Any) -> Decision:
    """One tick for the single function ``f``."""
    return policy.decide(obs(now_s, {"f": fobs("f", **kw)}, tick_s))


def replicas_at(policy: Policy, workflow: Workflow, now_s: float) -> dict[str, int | None]:
    """The replicas ``policy`` wants per function of ``workflow`` at ``now_s``, none running."""
    o = Observation(
        now_s=now_s,
        tick_s=1.0,
        functions={f: fobs(f, replicas_ready=0) for f in workflow.functions},
        workflows={workflow.name: workflow},
    )
    return {n: d.replicas for n, d in policy.decide(o).functions.items()}


def first_video_decision(
    tmp_path: Path, policy: str, *, seed: int, backend_options: str = "{}"
) -> dict[str, Any]:
    """The first line of ``decisions.jsonl`` of two simulated minutes of video-analytics
    (two Poisson requests a minute) under ``policy``, a YAML flow mapping of one policy
    entry (``{name: oracle, params: {...}}``)."""
    from testbed.experiment.results import find_runs
    from testbed.experiment.run import run_experiment
    from testbed.experiment.spec import load_spec

    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / "video.yaml"
    config.write_text(
        f"name: vw\nbackend: sim\nstack: {repo / 'stack.yml'}\nworkflows: [video-analytics]\n"
        "trace: {kind: poisson, minutes: 2, options: {rate_per_min: 2}}\n"
        f"duration_s: 120\nwarmup_s: 0\nseeds: [{seed}]\nbackend_options: {backend_options}\n"
        f"policies:\n  - {policy}\n"
    )
    result = run_experiment(load_spec(config), tmp_path / "out")
    (run_dir,) = find_runs([result.out_dir])
    first: dict[str, Any] = json.loads((run_dir / "decisions.jsonl").read_text().splitlines()[0])
    return first


def sim_runs_by_label(tmp_path: Path, name: str, body: str) -> dict[str, Any]:
    """Run the simulated experiment ``name`` (the repository's stack; ``body``: the rest of
    its YAML, workflows to policies) under ``tmp_path``: its runs by policy label."""
    from testbed.experiment.results import find_runs, load_run
    from testbed.experiment.run import run_experiment
    from testbed.experiment.spec import load_spec

    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"name: {name}\nbackend: sim\nstack: {repo / 'stack.yml'}\n{body}")
    result = run_experiment(load_spec(config), tmp_path / "out")
    return {run.label: run for run in map(load_run, find_runs([result.out_dir]))}
