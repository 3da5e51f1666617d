"""The evaluation grid on the simulator: sweeps expand, cells resume, the summary is honest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from testbed.core.errors import ConfigError
from testbed.experiment.evaluation import (
    Cell,
    WorkLeft,
    _CellQueue,
    cells,
    expected_seconds,
    load_evaluation,
    run_evaluation,
    run_seconds,
    sweep_label,
)
from testbed.report.compare import Estimate
from testbed.report.evaluation import (
    EvaluationSummary,
    PointSummary,
    _cost_claims,
    _qos_claims,
    bootstrap_ratio,
    dominance_text,
    dominated_seeds,
    is_aquatope,
    is_competitor,
    write_results_markdown,
)

REPO = Path(__file__).resolve().parents[2]

GRID = f"""
name: tiny
description: a two-seed grid for the tests
seeds: 2
base:
  backend: sim
  stack: {REPO / "stack.yml"}
  workflows: [social-network]
  duration_s: 360
  warmup_s: 60
traces:
  bursty:
    kind: bursty
    minutes: 6
    options: {{rate_per_min: 20, on_min: 0.5, off_min: 1.5}}
policies:
  - name: always-on
  - name: keep-alive
    sweep: {{window_s: [2, 120]}}
"""


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    path = tmp_path / "evaluation.yaml"
    path.write_text(GRID)
    return path


def test_sweeps_expand_into_labels_and_cells(grid: Path) -> None:
    spec = load_evaluation(grid)
    labels = [p.label for p in spec.experiments["bursty"].policies]
    assert labels == ["always-on", "keep-alive-window-s-2", "keep-alive-window-s-120"]
    assert spec.families[sweep_label("keep-alive", "window_s", 2)] == "keep-alive"
    assert (
        sweep_label("aquatope-prewarm", "idle_weight", 0.01) == "aquatope-prewarm-idle-weight-0p01"
    )
    assert spec.knobs["keep-alive-window-s-120"] == ("window_s", 120)
    assert len(list(cells(spec))) == 3 * 2
    assert load_evaluation(grid, seeds=1, families=["keep-alive"]).seeds == (0,)
    # a family keeps its whole sweep, a sweep label only that point
    narrowed = load_evaluation(grid, families=["always-on", "keep-alive-window-s-120"])
    assert [p.label for p in narrowed.experiments["bursty"].policies] == [
        "always-on",
        "keep-alive-window-s-120",
    ]
    with pytest.raises(ConfigError, match="no policy labelled keep-alive-window-s-7"):
        load_evaluation(grid, families=["keep-alive-window-s-7"])
    with pytest.raises(ConfigError, match="no trace"):
        load_evaluation(grid, traces=["nope"])


def test_a_trace_can_replace_base_keys_for_itself(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.yaml"
    small_host = """  small-host:
    kind: bursty
    minutes: 6
    base: {backend_options: {host_cores: 2}, duration_s: 120}
policies:"""
    bad = small_host.replace("base: {backend_options: {host_cores: 2}, duration_s: 120}", "base: 7")
    path.write_text(GRID.replace("policies:", small_host, 1))
    spec = load_evaluation(path)
    assert spec.experiments["small-host"].backend_options == {"host_cores": 2}
    assert spec.experiments["small-host"].duration_s == 120
    assert spec.experiments["bursty"].backend_options == {}  # the others keep the base
    assert spec.experiments["bursty"].duration_s == 360
    path.write_text(GRID.replace("policies:", bad, 1))
    with pytest.raises(ConfigError, match=r"traces\.small-host\.base must be a mapping"):
        load_evaluation(path)


def test_bad_evaluation_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GRID.replace("seeds: 2", "seeds: 0"))
    with pytest.raises(ConfigError, match="seeds"):
        load_evaluation(path)
    path.write_text(GRID.replace("name: keep-alive", "name: no-such-policy"))
    with pytest.raises(ConfigError, match="no-such-policy"):
        run_evaluation(load_evaluation(path), tmp_path / "out")


def _timed_run(
    out: Path, cell: Cell, took_s: float, *, complete: bool = True, cpu_s: float | None = None
) -> None:
    run = cell.run_dir(out)
    run.mkdir(parents=True)
    meta: dict[str, object] = {"complete": complete, "started_unix_s": 1000.0}
    meta["finished_unix_s"] = 1000.0 + took_s
    if cpu_s is not None:
        meta["sim"] = {"cpu_s": cpu_s, "wall_s": took_s}
    (run / "meta.json").write_text(json.dumps(meta))


def test_cells_go_lowest_seed_first_and_longest_known_first_within_it(tmp_path: Path) -> None:
    names = ("fast", "slow", "middling", "untimed")
    seed0 = [Cell("t", i, label, 0) for i, label in enumerate(names)]
    for cell, took in zip(seed0, (1.0, 90.0, 20.0), strict=False):
        _timed_run(tmp_path, cell, took)
    _timed_run(tmp_path, seed0[3], 500.0, complete=False)  # a crashed run teaches nothing
    later = [Cell("t", i, label, seed) for seed in (2, 1) for i, label in enumerate(names)]
    queue = _CellQueue(later, tmp_path, timed=seed0)
    order = [queue.pop() for _ in later]
    assert queue.pop() is None
    assert [(c.seed, c.label) for c in order if c is not None] == [
        (1, "untimed"), (1, "slow"), (1, "middling"), (1, "fast"),
        (2, "untimed"), (2, "slow"), (2, "middling"), (2, "fast"),
    ]  # fmt: skip


def test_a_cell_timed_while_the_grid_runs_reorders_the_rest(tmp_path: Path) -> None:
    first, second = Cell("t", 0, "a", 0), Cell("t", 1, "b", 0)
    later = [Cell("t", i, label, seed) for seed in (1, 2, 3) for i, label in enumerate("ab")]
    queue = _CellQueue([first, second, *later], tmp_path, [])
    assert (queue.pop(), queue.pop()) == (first, second)  # nothing timed: grid order
    _timed_run(tmp_path, first, 5.0)
    _timed_run(tmp_path, second, 50.0)
    queue.timed(first)
    queue.timed(second)
    assert [queue.pop(), queue.pop()] == [Cell("t", 1, "b", 1), Cell("t", 0, "a", 1)]
    for seed, a_took, b_took in ((1, 6.0, 40.0), (2, 500.0, 45.0)):  # "a" paused once
        for cell, took in ((Cell("t", 0, "a", seed), a_took), (Cell("t", 1, "b", seed), b_took)):
            _timed_run(tmp_path, cell, took)
            queue.timed(cell)
        if seed == 1:
            assert [queue.pop(), queue.pop()] == [Cell("t", 1, "b", 2), Cell("t", 0, "a", 2)]
    # medians (a: 5, 6, 500; b: 50, 40, 45) keep "b" first: a pause does not make "a" long
    assert [queue.pop(), queue.pop(), queue.pop()] == [
        Cell("t", 1, "b", 3),
        Cell("t", 0, "a", 3),
        None,
    ]
    assert run_seconds(tmp_path / "nowhere") is None
    paused = Cell("t", 2, "c", 0)
    _timed_run(tmp_path, paused, 600.0, cpu_s=30.0)  # stopped for ten minutes midway
    assert run_seconds(paused.run_dir(tmp_path)) == 30.0


def test_expected_seconds_are_medians_of_the_point_then_the_policy_then_every_run(
    tmp_path: Path,
) -> None:
    timed = {Cell("a", 0, "slow", 0): 40.0, Cell("a", 0, "slow", 1): 60.0}
    timed |= {Cell("a", 1, "fast", 0): 2.0, Cell("b", 0, "slow", 0): 10.0}
    for cell, took in timed.items():
        _timed_run(tmp_path, cell, took)
    _timed_run(tmp_path, Cell("a", 1, "fast", 1), 999.0, complete=False)  # not a timing
    later = [Cell("a", 0, "slow", 2), Cell("c", 0, "slow", 0), Cell("c", 1, "fast", 0)]
    unseen = Cell("c", 2, "new", 0)
    got = expected_seconds([*timed, *later, unseen], tmp_path)
    assert got[Cell("a", 0, "slow", 2)] == 50.0  # its own trace and policy, other seeds
    assert got[Cell("c", 0, "slow", 0)] == 40.0  # the policy elsewhere (median)
    assert got[Cell("c", 1, "fast", 0)] == 2.0
    assert got[unseen] == 25.0  # every run timed (median)
    assert expected_seconds([unseen], tmp_path / "empty") == {unseen: 1.0}


def test_the_work_left_learns_from_the_first_runs_of_a_fresh_grid(tmp_path: Path) -> None:
    """A fresh grid weighs every cell alike; once a pre-warmer's run took twenty times a
    baseline's, the cells still to come are weighed by that (the bar's ETA with them)."""
    grid = [Cell("t", i, label, seed) for seed in range(3) for i, label in enumerate("ab")]
    work = WorkLeft(grid, tmp_path)
    assert work.left_s == 6.0 and work.done_s == 0.0
    _timed_run(tmp_path, grid[0], 40.0)
    work.finished(grid[0], ran=True)
    assert work.done_s == 40.0 and work.left_s == 2 * 40.0 + 3 * 40.0  # b: every run's median
    _timed_run(tmp_path, grid[1], 2.0)
    work.finished(grid[1], ran=True)
    assert work.done_s == 42.0 and work.left_s == 2 * 40.0 + 2 * 2.0
    work.finished(grid[2], ran=False)  # complete already: no work done, none left in it
    assert work.done_s == 42.0 and work.left_s == 40.0 + 2 * 2.0
    work.finished(grid[3], ran=True)  # failed before it was timed: what it was expected to take
    assert work.done_s == 44.0 and work.left_s == 40.0 + 2.0
    # two workers did 44 s of work in 22 s: the 42 s left take about 21 s more
    assert work.eta_s(22.0) == 21.0 and WorkLeft(grid, tmp_path / "fresh").eta_s(5.0) is None


LIVE_GRID = f"""
name: live
description: a simulated grid confirmed live
seeds: 1
base:
  backend: sim
  backend_options: {{host_cores: 4}}
  stack: {REPO / "stack.yml"}
  workflows: [social-read-home]
  duration_s: 8
  warmup_s: 1
  drain_s: 5
  sample_s: 0.5
  loadgen: {{timeout_s: 20, locust_csv: false}}
traces:
  bursty:
    kind: bursty
    minutes: 2
    compress: 12
    options: {{rate_per_min: 40, on_min: 0.5, off_min: 0.5}}
    base: {{backend_options: {{host_cores: 8}}}}
policies:
  - name: always-on
"""


def test_another_backend_drops_the_files_backend_options(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(LIVE_GRID)
    simulated = load_evaluation(path).experiments["bursty"]
    assert (simulated.backend, dict(simulated.backend_options)) == ("sim", {"host_cores": 8})
    live = load_evaluation(path, backend="local").experiments["bursty"]
    assert (live.backend, dict(live.backend_options)) == ("local", {})
    assert load_evaluation(path, backend="sim").experiments["bursty"] == simulated


@pytest.mark.slow
def test_a_simulated_grid_is_confirmed_live_one_run_at_a_time(tmp_path: Path) -> None:
    from testbed.cli import cli

    path = tmp_path / "live.yaml"
    path.write_text(LIVE_GRID)
    out, md = tmp_path / "out", tmp_path / "RESULTS.md"
    args = ["evaluate", str(path), "--backend", "local", "-o", str(out), "--results-md", str(md)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "bursty" / "always-on" / "seed-0" / "meta.json").read_text())
    assert meta["complete"] and meta["backend"] == "local" and meta["requests"] > 0
    text = md.read_text()
    assert "Backend `local`" in text and "Live runs, one at a time" in text
    assert "1 seed per point" in text  # not "1 seeds"
    assert "--backend local" in text  # the command that reproduces it


def test_a_grid_run_into_a_log_file_says_each_run_and_the_time_left(
    grid: Path, tmp_path: Path
) -> None:
    from testbed.cli import cli

    out, md = tmp_path / "out", tmp_path / "RESULTS.md"
    args = ["evaluate", str(grid), "-o", str(out), "--results-md", str(md), "--seeds", "1"]
    args += ["--policy", "keep-alive-window-s-120"]  # a line longer than 80 columns
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("[1/1]"))
    assert line.startswith("[1/1] bursty keep-alive-window-s-120 seed-0 done; 100 % of the work")
    assert line.endswith(" left")  # one line, never wrapped at the console's width
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "done;" not in again.output  # nothing ran: the complete run was reused
    assert "reused 1 complete run(s)" in again.output


@pytest.mark.slow
def test_grid_runs_resumes_and_summarises(grid: Path, tmp_path: Path) -> None:
    from testbed.cli import cli

    out = tmp_path / "out"
    spec = load_evaluation(grid)
    first = run_evaluation(spec, out, jobs=2)
    assert len(first) == 6 and all(r.ran and r.error is None for r in first)
    again = run_evaluation(spec, out, jobs=2)
    assert not any(r.ran for r in again)  # everything was complete
    redone = run_evaluation(spec, out, jobs=2, fresh=True)  # e.g. after a code change
    assert len(redone) == 6 and all(r.ran and r.error is None for r in redone)
    shutil.rmtree(out / "bursty" / "always-on" / "seed-1")
    third = run_evaluation(spec, out, jobs=2)
    assert [(r.cell.label, r.cell.seed) for r in third if r.ran] == [("always-on", 1)]

    md = tmp_path / "RESULTS.md"
    result = CliRunner().invoke(
        cli,
        ["evaluate", str(grid), "-o", str(out), "--results-md", str(md), "--summarise-only"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = md.read_text()
    assert "## bursty" in text and "keep-alive-window-s-120" in text
    assert "The paper's claims, measured" in text
    assert (tmp_path / "RESULTS" / "bursty-cold-vs-idle.png").stat().st_size > 10_000

    # narrowed to one policy, the summary still reads every run in the directory, and the
    # others keep the family and knob the whole file gives them
    from testbed.cli.evaluate import summarise_into

    narrow = load_evaluation(grid, families=["always-on"])
    part, _ = summarise_into(narrow, out, tmp_path / "part.md", command="-", labels=spec)
    families = {p.label: (p.family, p.knob) for p in part.traces["bursty"]}
    assert families["keep-alive-window-s-2"] == ("keep-alive", ("window_s", 2))
    guessed, _ = summarise_into(narrow, out, tmp_path / "guess.md", command="-")
    # --seeds 1 summarises seed 0 alone, though seed 1's runs are there too
    first_seed, _ = summarise_into(
        load_evaluation(grid, seeds=1), out, tmp_path / "one.md", command="-"
    )
    assert {s for p in first_seed.traces["bursty"] for s in p.per_seed} == {0}
    assert all(len(p.per_seed) == 2 for p in part.traces["bursty"])
    assert {p.label: p.family for p in guessed.traces["bursty"]}["keep-alive-window-s-2"] == (
        "keep-alive-window-s-2"  # without the whole file a label is its own family
    )

    from testbed.experiment.results import find_runs
    from testbed.report.compare import load_metrics
    from testbed.report.evaluation import summarise

    runs = load_metrics(find_runs([out / "bursty"]))
    summary = summarise({"bursty": runs}, families=spec.families, knobs=dict(spec.knobs))
    points = {p.label: p for p in summary.traces["bursty"]}
    short, long = points["keep-alive-window-s-2"], points["keep-alive-window-s-120"]
    # a short keep-alive window idles less and starts cold more often than a long one
    assert short.mean("idle_replica_s") < long.mean("idle_replica_s")
    assert short.mean("cold_start_pct") > long.mean("cold_start_pct")
    assert short.estimates["cold_start_pct"].n == 2


def test_bootstrap_ratio_of_means_with_paired_interval() -> None:
    ratio, low, high = bootstrap_ratio({0: 4.0, 1: 8.0, 2: 6.0}, {0: 2.0, 1: 4.0, 2: 3.0})
    assert ratio == pytest.approx(2.0)
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)  # every seed is exactly 2x
    ratio, low, high = bootstrap_ratio({0: 1.0, 1: 3.0}, {0: 1.0, 1: 1.0})
    assert ratio == pytest.approx(2.0) and low < 2.0 < high
    ratio, _, _ = bootstrap_ratio({0: 2.0}, {0: 0.0}, floor=1.0)
    assert ratio == pytest.approx(3.0)


def _point(label: str, family: str, viol: list[float], cost: list[float]) -> PointSummary:
    per_seed = {
        s: {"qos_violation_pct": v, "cost_usd": c}
        for s, (v, c) in enumerate(zip(viol, cost, strict=True))
    }
    estimates = {
        "qos_violation_pct": Estimate(sum(viol) / len(viol), 0.0, len(viol)),
        "cost_usd": Estimate(sum(cost) / len(cost), 0.0, len(cost)),
    }
    return PointSummary(label, family, None, per_seed, estimates, requests=100)


def test_ablations_and_the_oracle_are_never_the_baseline_of_a_claim() -> None:
    ours = _point("aquatope-prewarm-x", "aquatope-prewarm", [1.0, 1.0], [1.0, 1.0])
    points = [
        ours,
        _point("ablation-no-gaps", "ablation-no-gaps", [0.1, 0.1], [0.5, 0.5]),
        _point("oracle-b", "oracle", [0.0, 0.0], [0.2, 0.2]),
        _point("oracle-qos", "oracle-qos", [0.0, 0.0], [0.1, 0.1]),  # a labelled variant
        _point("keep-alive-w", "keep-alive", [4.0, 4.0], [0.9, 0.9]),
    ]
    (qos,) = _qos_claims("t", points, floor=0.0)
    assert qos.aquatope == "aquatope-prewarm-x" and qos.competitor == "keep-alive-w"
    assert qos.value == pytest.approx(4.0)
    (cost,) = _cost_claims("t", points, allowed_pct=5.0)
    assert cost.competitor == "keep-alive-w"


def test_a_point_dominated_on_average_is_judged_seed_by_seed() -> None:
    """One heavy seed drives the mean cost and two light ones the mean violation rate: on
    average the pool looks both cheaper and better, yet it dominates on one seed only."""
    ours = _point("aquatope-prewarm-x", "aquatope-prewarm", [2.0, 0.8, 0.4], [12.0, 17.0, 39.0])
    pool = _point("static-pool-1", "static-pool", [0.0, 0.0, 0.5], [18.0, 18.0, 18.0])
    keep = _point("keep-alive-600", "keep-alive", [3.0, 8.0, 0.4], [10.0, 13.0, 27.0])
    oracle = _point("oracle-b", "oracle", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # a bound only
    tie = _point("always-on", "always-on", [2.0, 0.9, 0.4], [12.0, 18.0, 39.0])  # equal: no
    points = [ours, pool, keep, oracle, tie]
    (qos,) = _qos_claims("t", points, floor=0.0)
    assert qos.competitor == "static-pool-1" and qos.value < 1.0  # "dominated" on average
    assert dominated_seeds(ours, points) == {2: ("keep-alive-600",)}
    assert dominance_text(ours, points) == "1 of 3 (seed 2: keep-alive-600)"
    alone = _point("aquatope-prewarm-y", "aquatope-prewarm", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert dominated_seeds(alone, points) == {} and dominance_text(alone, points) == "none of 3"


def test_the_results_page_says_per_seed_where_a_baseline_dominates(tmp_path: Path) -> None:
    ours = _point("aquatope-prewarm-x", "aquatope-prewarm", [2.0, 0.4], [12.0, 39.0])
    keep = _point("keep-alive-600", "keep-alive", [3.0, 0.3], [10.0, 27.0])
    points = tuple(_with_every_column(p) for p in (ours, keep))
    summary = EvaluationSummary(traces={"azure-like": points}, claims=())
    md = tmp_path / "RESULTS.md"
    write_results_markdown(summary, md, title="t", command="c")
    assert "| azure-like | aquatope-prewarm-x | 1 of 2 (seed 1: keep-alive-600) |" in md.read_text()


def _with_every_column(p: PointSummary) -> PointSummary:
    """``p`` with the columns the page's tables read but the claims do not."""
    extra = {"cold_start_pct": 0.0, "p99_ms": 100.0, "idle_replica_s": 1.0}
    rows = {s: {**v, **extra} for s, v in p.per_seed.items()}
    estimates = {**p.estimates, **{k: Estimate(v, 0.0, len(rows)) for k, v in extra.items()}}
    return PointSummary(p.label, p.family, None, rows, estimates, p.requests)


def test_a_seed_without_requests_is_left_out_of_the_ratio() -> None:
    nan = float("nan")
    ratio, low, high = bootstrap_ratio({0: 4.0, 1: 8.0, 2: 6.0}, {0: 2.0, 1: 4.0, 2: nan})
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0)
    assert high == pytest.approx(2.0)


def test_the_sizing_grid_pits_aquatope_against_each_method_on_the_same_replica_policy() -> None:
    spec = load_evaluation(REPO / "experiments" / "sizing.yaml")
    for exp in spec.experiments.values():
        sized = {p.label: p.params for p in exp.policies if p.name == "sized"}
        methods = {params["config_method"] for params in sized.values()}
        assert methods == {"power-tuning", "cherrypick", "paper-bo", "random"}
        assert all(p["replicas"] == "hybrid-histogram" for p in sized.values())
        assert all(is_competitor(spec.families[label]) for label in sized)
        # Aquatope (pre-warmer and configurator) at several miss prices: a curve, not a point
        ours = {p.label: p.params for p in exp.policies if p.name == "aquatope"}
        assert len({params["miss_price_s"] for params in ours.values()}) >= 3
        assert all(spec.families[label] == "aquatope" for label in ours)
        assert all(is_aquatope(spec.families[label]) for label in ours)
        assert all(params["config_workflow"] == "ml-pipeline" for params in ours.values())
        assert exp.workflows == ("ml-pipeline",)


def test_the_live_confirmation_replays_points_of_the_headline_grid() -> None:
    """experiments/confirm.yaml checks the headline live: the same trace kind and workflows,
    policies that are points of the headline's sweeps, Aquatope against a competitor, and a
    scored window after the training one."""
    head = load_evaluation(REPO / "experiments" / "evaluation.yaml")
    confirm = load_evaluation(REPO / "experiments" / "confirm.yaml")
    points = {
        (p.name, tuple(sorted(p.params.items())))
        for exp in head.experiments.values()
        for p in exp.policies
    }
    for trace, exp in confirm.experiments.items():
        assert exp.trace.kind == head.experiments[trace].trace.kind
        assert exp.workflows == head.experiments[trace].workflows
        assert exp.backend == "sim" and 0 < exp.warmup_s < exp.duration_s
        for policy in exp.policies:
            assert (policy.name, tuple(sorted(policy.params.items()))) in points
        families = [confirm.families[p.label] for p in exp.policies]
        assert any(is_aquatope(f) for f in families) and any(is_competitor(f) for f in families)


def test_the_multi_day_grid_trains_on_a_whole_day_before_it_scores() -> None:
    """experiments/multiday.yaml: every run is two trace days, the first of them training
    (hybrid-histogram's histograms and Aquatope's models alike) and never scored."""
    grid = load_evaluation(REPO / "experiments" / "multiday.yaml")
    assert len(grid.experiments) == 2 and len(grid.seeds) >= 5
    for exp in grid.experiments.values():
        assert exp.backend == "sim"
        assert exp.warmup_s == 86400 and exp.duration_s == 2 * 86400
        assert {p.name for p in exp.policies} >= {
            "hybrid-histogram",
            "aquatope-prewarm",
            "keep-alive",
            "oracle",
        }
