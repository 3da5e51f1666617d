"""The runner on the simulator: policies × seeds, identical traces, then compare and report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from testbed.core.workflows import load_workflows
from testbed.experiment.policies import planned_arrivals
from testbed.experiment.results import find_runs, load_run
from testbed.experiment.run import run_experiment
from testbed.experiment.spec import load_spec
from testbed.experiment.workload import build_trace
from testbed.report.compare import compare_runs, load_metrics
from testbed.report.html import write_report
from tests.scheduler.sched_helpers import first_video_decision

REPO = Path(__file__).resolve().parents[2]


def test_sim_experiment_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(
        f"name: simq\nbackend: sim\nstack: {REPO / 'stack.yml'}\n"
        "workflows: [social-network]\n"
        "trace: {kind: bursty, minutes: 10, compress: 2, "
        "options: {rate_per_min: 30, on_min: 1, off_min: 2}}\n"
        "duration_s: 300\nwarmup_s: 30\nrepetitions: 2\n"
        "policies:\n  - name: always-on\n  - name: keep-alive\n    label: scale-to-zero\n"
        "    params: {window_s: 10}\n"
    )
    spec = load_spec(config)
    done: list[str] = []
    result = run_experiment(spec, tmp_path / "out", on_run_done=lambda o: done.append(o.label))
    assert done == ["always-on", "scale-to-zero", "always-on", "scale-to-zero"]
    runs = {(r.label, r.seed): r for r in map(load_run, find_runs([result.out_dir]))}
    assert set(runs) == {(p, s) for p in ("always-on", "scale-to-zero") for s in (0, 1)}
    for run in runs.values():
        assert run.meta["complete"] and run.meta["policy_index"] in (0, 1)
        assert run.meta["trace"]["requests"] == len(run.requests) > 50
    # same seed -> same arrivals for both policies; another seed -> other arrivals
    for seed in (0, 1):
        a = runs[("always-on", seed)].requests.sort_values("intended_s")["intended_s"]
        b = runs[("scale-to-zero", seed)].requests.sort_values("intended_s")["intended_s"]
        assert np.allclose(a.to_numpy(), b.to_numpy())
    assert len(runs[("always-on", 0)].requests) != len(runs[("always-on", 1)].requests)

    comp = compare_runs(load_metrics([result.out_dir]))
    always, zero = comp.get("always-on"), comp.get("scale-to-zero")
    assert always.seeds == zero.seeds == (0, 1)
    # scale-to-zero pays in cold starts and saves idle replicas
    assert zero.metrics["cold_start_pct"].mean > always.metrics["cold_start_pct"].mean
    assert zero.ratios["wasted_memory_gib_s"].mean < 1.0
    report = write_report([result.out_dir], tmp_path / "report.html")
    assert len(report.png_paths) == 4 and report.html_path.stat().st_size > 50_000


def test_the_runner_gives_the_oracle_the_trace(tmp_path: Path) -> None:
    """An oracle run through the experiment runner knows the arrivals (mixes included)."""
    config = tmp_path / "oracle.yaml"
    config.write_text(
        f"name: oracle\nbackend: sim\nstack: {REPO / 'stack.yml'}\n"
        "workflows: [ml-pipeline, social-network]\n"
        "trace: {kind: bursty, minutes: 8, "
        "options: {rate_per_min: 6, on_min: 1, off_min: 3}}\n"
        "duration_s: 480\nwarmup_s: 60\nseeds: [3]\n"
        "policies:\n  - name: keep-alive\n    params: {window_s: 10}\n"
        "  - name: oracle\n    params: {lead_s: 30}\n"
    )
    spec = load_spec(config)
    result = run_experiment(spec, tmp_path / "out")
    # each mix request calls the workflow the load generator's seeded draw picks (as a live
    # run would), and that plan is what the oracle is given
    trace = build_trace(spec.trace, spec.workflows, seed=3, duration_s=spec.duration_s)
    planned = planned_arrivals(trace, spec.workflows, load_workflows(), seed=3)
    assert {"social-compose-post", "social-read-home", "social-read-user"} <= set(planned)
    for run in map(load_run, find_runs([result.out_dir])):
        sent = run.requests.groupby("workflow")["intended_s"]
        assert {wf: sorted(t) for wf, t in sent} == {
            wf: sorted(t.tolist()) for wf, t in planned.items()
        }
    comp = compare_runs(load_metrics([result.out_dir]))
    oracle, keepalive = comp.get("oracle"), comp.get("keep-alive")
    # knowing every arrival, the unbounded oracle starts (almost) nothing cold
    assert oracle.metrics["cold_start_pct"].mean < 1.0
    assert keepalive.metrics["cold_start_pct"].mean > 5 * max(
        oracle.metrics["cold_start_pct"].mean, 0.5
    )


def test_a_simulated_policy_hears_of_the_runs_workflows_only_as_live(tmp_path: Path) -> None:
    """video-analytics alone: image-processing's strictest target is its 6 s, not the
    ml-pipeline's 150 ms (the simulator knows every shipped workflow; a live daemon is told
    the run's). A 1 s start is a sixth of 6 s: the pre-warmer prices it at 30 / 6 = 5 s,
    where the ml-pipeline's target would make it the whole price, 30 s."""
    policy = "{name: aquatope-prewarm, params: {miss_price_s: 30}}"
    first = first_video_decision(tmp_path, policy, seed=1)
    assert "blocked=5s" in first["functions"]["image-processing"]["reason"]
    assert set(first["functions"]) == set(load_workflows().get("video-analytics").functions)
