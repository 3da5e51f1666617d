"""Whole simulated runs: the daemon ticking in simulated time, results files, the runner hook."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from scheduler.policies.keepalive import KeepAlivePolicy
from testbed.core.errors import ConfigError
from testbed.core.workflows import load_workflows
from testbed.experiment.results import (
    REQUESTS_COLUMNS,
    STAGES_COLUMNS,
    TIMELINE_COLUMNS,
    RunData,
)
from testbed.experiment.simulate import run_simulation
from testbed.sim.distributions import Distribution
from tests.sim.sim_helpers import make_profile


def test_keepalive_daemon_in_sim_time(tmp_path: Path) -> None:
    profile = make_profile(
        ["f"], service=Distribution.constant(0.2), cold=Distribution.constant(1.0)
    )
    results = run_simulation(
        {"profile": profile},
        None,
        {"f": [5.0, 5.5, 30.0]},
        KeepAlivePolicy(window_s=10.0),
        tick_s=1.0,
        seed=0,
        results_dir=tmp_path,
        until_s=60.0,
        meta={"experiment": "t"},
    )
    req = results.requests.sort_values("intended_s")
    assert req["cold_start"].tolist() == [True, True, True]  # 30 s is after the 10 s window
    tl = results.timeline.set_index("t_s")
    alive = tl["replicas_ready"] + tl["replicas_starting"]
    # the two requests at 5.0 and 5.5 needed two replicas at once (one queued behind the
    # first's cold start): per-replica keep-alive holds both until the window has passed
    assert alive.loc[6.0] == 2 and alive.loc[15.0] == 2 and alive.loc[20.0] == 0
    assert alive.loc[31.0] == 1 and alive.loc[50.0] == 0
    decisions = [
        json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()
    ]
    assert len(decisions) == 60 and all(d["valid"] for d in decisions)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["backend"] == "sim" and meta["complete"] and meta["experiment"] == "t"
    for name, columns in (
        ("requests", REQUESTS_COLUMNS),
        ("stages", STAGES_COLUMNS),
        ("timeline", TIMELINE_COLUMNS),
    ):
        frame = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(frame.columns) == list(columns), name


def test_shipped_workflows_and_mix_in_the_sim(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    trace = {
        "ml-pipeline": np.sort(rng.uniform(0, 120, 60)),
        "social-network": np.sort(rng.uniform(0, 120, 200)),
    }
    results = run_simulation(
        None, load_workflows(), trace, "always-on", tick_s=1.0, seed=3, results_dir=tmp_path
    )
    req = results.requests
    assert len(req) == 260 and req["ok"].all()
    assert set(req["workflow"]) >= {"ml-pipeline", "social-compose-post", "social-read-home"}
    ml = results.stages[
        results.stages["request_id"].isin(req[req.workflow == "ml-pipeline"].request_id)
    ]
    assert set(ml["stage"]) == {
        "image-processing",
        "object-detection",
        "digit-classifier",
        "digit-classifier-svm",
    }


@pytest.mark.slow
def test_experiment_runner_backend_sim(tmp_path: Path) -> None:
    from testbed.experiment.results import find_runs, load_run
    from testbed.experiment.run import run_experiment as run_config
    from testbed.experiment.spec import parse_spec

    repo = Path(__file__).resolve().parents[2]
    spec = parse_spec(
        {
            "name": "sim-check",
            "backend": "sim",
            "stack": str(repo / "stack.yml"),
            "workflows": ["ml-pipeline"],
            "trace": {
                "kind": "bursty",
                "minutes": 2,
                "options": {"rate_per_min": 30, "on_min": 0.5, "off_min": 0.5},
            },
            "duration_s": 120,
            "seeds": [1],
            "policies": [{"name": "always-on"}, {"name": "keep-alive", "params": {"window_s": 10}}],
        }
    )
    run_config(spec, tmp_path)
    runs = find_runs([tmp_path])
    assert len(runs) == 2
    for run_dir in runs:
        run = load_run(run_dir)
        assert run.meta["complete"] and len(run.requests) > 0 and len(run.timeline) > 0


def test_profile_cli_rejects_bad_levels(tmp_path: Path) -> None:
    from testbed.cli import cli

    result = CliRunner().invoke(
        cli, ["profile", "-o", str(tmp_path), "--cpu-levels", "fast"], catch_exceptions=False
    )
    assert result.exit_code == 2 and "--cpu-levels" in result.output


def _always_on_ml_pipeline_run(tmp_path: Path, cold_s: float, **spec: object) -> RunData:
    """One simulated always-on run of the ml-pipeline (a profile with 10 ms calls and
    ``cold_s`` starts, no CPU contention, 20 s, nothing unscored) with ``spec`` on top."""
    from testbed.experiment.results import find_runs, load_run
    from testbed.experiment.run import run_experiment as run_config
    from testbed.experiment.spec import parse_spec
    from testbed.sim.profile import save_profile

    repo = Path(__file__).resolve().parents[2]
    functions = load_workflows().get("ml-pipeline").functions
    profile = make_profile(
        functions, service=Distribution.constant(0.01), cold=Distribution.constant(cold_s)
    )
    path = save_profile(profile, tmp_path / "profile.json")
    base: dict[str, object] = {
        "name": "ml-pipeline-always-on",
        "backend": "sim",
        "backend_options": {"profile": str(path), "host_cores": "unlimited"},
        "stack": str(repo / "stack.yml"),
        "workflows": ["ml-pipeline"],
        "duration_s": 20,
        "warmup_s": 0,
        "seeds": [1],
        "policies": [{"name": "always-on"}],
    }
    run_config(parse_spec({**base, **spec}), tmp_path / "out")
    return load_run(find_runs([tmp_path / "out"])[0])


@pytest.mark.parametrize(("settle_s", "cold_expected"), [(0.0, True), (12.0, False)])
def test_sim_runs_the_daemon_settle_s_before_the_traffic_as_live(
    tmp_path: Path, settle_s: float, cold_expected: bool
) -> None:
    """Live runs start the daemon max(3 s, settle_s) before t0; the sim does the same."""
    run = _always_on_ml_pipeline_run(
        tmp_path,
        5.0,
        trace={
            "kind": "bursty",
            "minutes": 1,
            "options": {"rate_per_min": 60, "off_rate_ratio": 1.0},
        },
        settle_s=settle_s,
    )
    first = run.requests.sort_values("intended_s").iloc[0]
    assert bool(first["cold_start"]) is cold_expected
    ticks = [json.loads(x)["t_s"] for x in (run.path / "decisions.jsonl").read_text().splitlines()]
    assert min(ticks) == pytest.approx(-max(3.0, settle_s) + 1.0)  # first tick, before t0


def test_decisions_every_lists_every_function_on_every_line(tmp_path: Path) -> None:
    """``decisions: every`` logs what the policy decided (and why) for every function at
    every tick; the default lists only what changed."""
    from testbed.experiment.results import find_runs
    from testbed.experiment.run import run_experiment as run_config
    from testbed.experiment.spec import parse_spec

    repo = Path(__file__).resolve().parents[2]
    functions = load_workflows().get("ml-pipeline").functions
    lines: dict[str, list[dict[str, object]]] = {}
    for mode in ("changes", "every"):
        spec = parse_spec(
            {
                "name": f"log-{mode}",
                "backend": "sim",
                "stack": str(repo / "stack.yml"),
                "workflows": ["ml-pipeline"],
                "trace": {"kind": "poisson", "minutes": 1, "options": {"rate_per_min": 20}},
                "duration_s": 30,
                "seeds": [1],
                "decisions": mode,
                "policies": [{"name": "keep-alive", "params": {"window_s": 5}}],
            }
        )
        run_config(spec, tmp_path / mode)
        (run,) = find_runs([tmp_path / mode])
        text = (run / "decisions.jsonl").read_text().splitlines()
        lines[mode] = [json.loads(x) for x in text]
    assert len(lines["every"]) == len(lines["changes"])
    assert all(set(line["functions"]) == set(functions) for line in lines["every"])
    assert any(set(line["functions"]) != set(functions) for line in lines["changes"])
    with pytest.raises(ConfigError, match="decisions"):
        parse_spec({**spec.raw, "decisions": "sometimes"})


@pytest.mark.parametrize(("loadgen", "cancelled"), [({}, True), ({"drain_s": 60}, False)])
def test_a_simulated_run_ends_with_the_live_replays_drain(
    tmp_path: Path, loadgen: dict[str, float], cancelled: bool
) -> None:
    """Replicas that take 30 s to start: with ``drain_s: 2`` every request is still waiting
    when the drain ends and is cancelled, as the load generator cancels it live; the
    load generator's own ``drain_s`` wins over the run's, as live."""
    run = _always_on_ml_pipeline_run(
        tmp_path,
        30.0,
        trace={"kind": "poisson", "minutes": 1, "options": {"rate_per_min": 30}},
        drain_s=2,
        loadgen=loadgen,
        decisions="every",
    )
    req = run.requests
    assert len(req) > 3
    if cancelled:
        assert (req["status"] == 0).all() and not req["cold_start"].any()
        assert set(req["error"]) == {"cancelled: run ended before the response"}
        assert float(req["end_s"].max()) == pytest.approx(float(req["sent_s"].max()) + 2.0)
        assert run.stages.empty
        ticks = [
            json.loads(x)["t_s"] for x in (run.path / "decisions.jsonl").read_text().splitlines()
        ]
        assert max(ticks) > 20.0  # the daemon ticked through the drain
    else:
        assert req["ok"].all() and req["cold_start"].all()
        assert float(req["end_s"].min()) > 25.0  # served once the replicas were up
