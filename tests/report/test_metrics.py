"""Metrics and cost against answers computed by hand on crafted results directories."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from testbed.core.errors import ConfigError
from testbed.experiment.results import load_run
from testbed.report.cost import compute_cost, timeline_intervals
from testbed.report.metrics import compute_metrics, demand_vs_replicas, violations_over_time


def test_violations_count_slow_errors_and_timeouts(crafted_run: Path) -> None:
    m = compute_metrics(load_run(crafted_run))
    assert m.requests == 4
    assert m.violations == 3  # slow, HTTP 500, transport timeout
    assert m.qos_violation_rate == pytest.approx(0.75)
    assert m.errors == 2
    assert m.error_rate == pytest.approx(0.5)


def test_cold_start_counted_once_per_request(crafted_run: Path) -> None:
    m = compute_metrics(load_run(crafted_run))
    assert m.cold_start_rate == pytest.approx(0.25)  # request 1 had two cold stages
    assert m.cold_start_rate_by_function == pytest.approx({"f1": 1 / 3, "f2": 1 / 3})


def test_latency_percentiles_end_to_end_and_per_stage(crafted_run: Path) -> None:
    m = compute_metrics(load_run(crafted_run))
    # sorted latencies 0.2 0.3 0.5 1.5, linear interpolation
    assert m.latency_s == pytest.approx({"p50": 0.4, "p95": 1.35, "p99": 1.47})
    assert m.stage_latency_s["wf/b"]["p50"] == pytest.approx(0.2)  # 0.1 0.2 1.0
    assert m.stage_latency_s["wf/a"]["p99"] == pytest.approx(0.3 + 0.98 * 0.2)
    assert m.by_workflow["wf"]["qos_violation_rate"] == pytest.approx(0.75)


def test_cost_charges_idle_replicas(crafted_run: Path) -> None:
    m = compute_metrics(load_run(crafted_run))
    c = m.cost
    # f1: 1 replica x 1 core x 5 s, then 3 alive (2 ready + 1 starting) x 5 s -> 20 core-s, 20 GiB-s
    # f2: 1 replica x 0.5 core x 8 s (from t=2)                              ->  4 core-s, 4 GiB-s
    assert c.cpu_core_s == pytest.approx(24.0)
    assert c.memory_gib_s == pytest.approx(24.0)
    # idle: f1 one ready replica without work the whole 10 s, f2 its replica for 8 s
    assert c.idle_memory_gib_s == pytest.approx(10.0 + 4.0)
    assert m.wasted_memory_gib_s == pytest.approx(14.0)
    # replica-seconds: f1 1 x 5 s + 3 x 5 s, f2 1 x 8 s; idle: f1's idle replica 10 s, f2's 8 s
    assert c.replica_s == pytest.approx(20.0 + 8.0)
    assert c.idle_replica_s == pytest.approx(10.0 + 8.0)
    assert c.invocations == 6
    assert c.decoupled_usd == pytest.approx(24 * 0.000024 + 24 * 0.0000025)
    assert c.lambda_usd == pytest.approx(24 * 0.0000166667 + 6 * 0.20 / 1e6)
    assert c.by_function["f2"]["cpu_core_s"] == pytest.approx(4.0)


def test_idle_warm_pool_costs_money_with_zero_requests(tmp_path: Path, make_run: Any) -> None:
    run = make_run(
        tmp_path / "r",
        meta={"label": "idle", "seed": 0, "duration_s": 60},
        requests=[],
        timeline=["0,f,2,0,0,0,0.25,256"],
    )
    m = compute_metrics(load_run(run))
    assert m.requests == 0 and math.isnan(m.qos_violation_rate)
    assert m.cost.cpu_core_s == pytest.approx(2 * 0.25 * 60)
    assert m.cost.memory_gib_s == pytest.approx(2 * 0.25 * 60)
    assert m.cost.decoupled_usd > 0


def test_overhead_from_decisions_and_meta(crafted_run: Path) -> None:
    m = compute_metrics(load_run(crafted_run))
    assert m.decisions == 2
    assert m.decide_mean_s == pytest.approx(0.002)
    assert math.isnan(m.scheduler_cpu_s)


def test_warmup_excludes_requests_and_cost(tmp_path: Path, make_run: Any) -> None:
    run = make_run(
        tmp_path / "r",
        meta={"label": "w", "seed": 0, "warmup_s": 5, "duration_s": 10},
        requests=[
            "1,wf,workflow,1.0,1.0,9.0,8.0,200,true,true,1,1.0,",
            "2,wf,workflow,6.0,6.0,6.5,0.5,200,true,false,0,1.0,",
            # no intended time recorded: the send time decides (before / after warm-up)
            "3,wf,workflow,,4.0,4.5,0.5,500,false,false,0,1.0,boom",
            "4,wf,workflow,,7.0,7.5,0.5,200,true,false,0,1.0,",
        ],
        stages=[
            "1,a,f,1.0,9.0,8.0,1,200",
            "2,a,f,6.0,6.5,0.5,0,200",
            "3,a,f,4.0,4.5,0.5,0,500",
            "4,a,f,7.0,7.5,0.5,0,200",
        ],
        timeline=["0,f,4,0,0,0,1,1024", "5,f,1,0,0,0,1,1024"],
    )
    m = compute_metrics(load_run(run))
    assert m.requests == 2 and m.violations == 0 and m.cold_start_rate == 0
    assert m.cost.cpu_core_s == pytest.approx(5.0)  # only [5, 10) with 1 replica
    assert m.cost.invocations == 2


def test_cost_step_function_clips_window() -> None:
    tl = pd.DataFrame(
        {
            "t_s": [0.0, 1.0, 3.0],
            "function": ["f", "f", "f"],
            "replicas_ready": [1, 2, 0],
            "replicas_starting": [0, 0, 0],
            "busy": [0, 2, 0],
            "queued": [0, 0, 0],
            "cpu_cores": [1.0, 1.0, 1.0],
            "memory_mb": [2048.0, 2048.0, 2048.0],
        }
    )
    c = compute_cost(tl, start_s=0.5, end_s=2.0, invocations=0)
    assert c.cpu_core_s == pytest.approx(0.5 * 1 + 1.0 * 2)
    assert c.memory_gib_s == pytest.approx(2 * (0.5 + 2.0))
    assert c.idle_memory_gib_s == pytest.approx(2 * 0.5)  # busy=2 fills both replicas later


def test_time_series(crafted_run: Path) -> None:
    run = load_run(crafted_run)
    over = violations_over_time(run, bin_s=2.0)
    assert over["t_s"].tolist() == [0.0, 2.0, 4.0]
    assert over["violations"].tolist() == [0, 2, 1]
    demand = demand_vs_replicas(run)
    last = demand[demand["t_s"] == 5.0].iloc[0]
    assert (last["ready"], last["starting"], last["demand"]) == (2, 1, 1)


def test_plain_function_requests_count_as_calls(tmp_path: Path, make_run: Any) -> None:
    run = make_run(
        tmp_path / "r",
        meta={"label": "f", "seed": 0, "duration_s": 1},
        requests=[
            "1,echo,function,0,0,0.1,0.1,200,1,1,1,,",
            "2,echo,function,0,0,0.1,0.1,200,1,0,0,,",
        ],
    )
    m = compute_metrics(load_run(run))
    assert m.cold_start_rate_by_function == {"echo": 0.5}
    assert m.violations == 0  # no target: only failures would count
    assert m.cost.invocations == 2


def test_malformed_files_name_the_file(tmp_path: Path, make_run: Any) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "meta.json").write_text('{"complete": true,')
    with pytest.raises(ConfigError, match=r"meta.json: line 1"):
        load_run(run)
    (run / "meta.json").write_text('{"complete": true}')
    (run / "requests.csv").write_text("request_id,latency_s\n1,0.5\n")
    with pytest.raises(ConfigError, match=r"requests.csv: missing column\(s\) workflow, ok"):
        load_run(run)


def test_a_request_exactly_on_its_target_meets_it(tmp_path: Path, make_run: Any) -> None:
    # QoS is "latency within the target": 1.0 s against 1.0 s is met, 1.0001 s is not
    run = make_run(
        tmp_path / "r",
        meta={"label": "q", "seed": 0, "duration_s": 3},
        requests=[
            "1,wf,workflow,0,0,1.0,1.0,200,true,false,0,1.0,",
            "2,wf,workflow,1,1,2.0001,1.0001,200,true,false,0,1.0,",
            "3,wf,workflow,2,2,2.25,0.25,200,true,false,0,1.0,",
        ],
    )
    m = compute_metrics(load_run(run))
    assert (m.requests, m.violations) == (3, 1)
    assert m.qos_violation_rate == pytest.approx(1 / 3)


def test_time_series_bins_rates_and_function_filter(tmp_path: Path, make_run: Any) -> None:
    run = load_run(
        make_run(
            tmp_path / "r",
            meta={"label": "t", "seed": 0, "duration_s": 30},
            requests=[
                "1,wf,workflow,1,1,1.5,0.5,200,true,false,0,1.0,",
                "2,wf,workflow,9.5,9.5,11,1.5,200,true,false,0,1.0,",  # slow
                "3,wf,workflow,,12,12.5,0.5,500,false,false,0,1.0,boom",  # no intended time
                "4,wf,workflow,25,25,25.5,0.5,200,true,false,0,1.0,",
            ],
            timeline=[
                "0.02,f1,1,0,1,2,1,128",
                "0.04,f2,2,1,0,3,1,128",  # same 0.1 s sample as f1's
                "5,f1,1,0,0,0,1,128",
            ],
        )
    )
    over = violations_over_time(run)  # 10 s bins by default; the request without an
    assert over["t_s"].tolist() == [0.0, 10.0, 20.0]  # intended time is placed by sent_s
    assert over["requests"].tolist() == [2, 1, 1]
    assert over["violations"].tolist() == [1, 1, 0]
    assert over["rate"].tolist() == [0.5, 1.0, 0.0]
    both = demand_vs_replicas(run)
    assert both["t_s"].tolist() == [0.0, 5.0]
    assert both.iloc[0][["ready", "starting", "demand"]].tolist() == [3, 1, 6]  # busy + queued
    only_f2 = demand_vs_replicas(run, ["f2"])
    assert only_f2["t_s"].tolist() == [0.0]
    assert only_f2.iloc[0][["ready", "starting", "demand"]].tolist() == [2, 1, 3]


def test_time_series_of_an_empty_run_have_their_columns(tmp_path: Path, make_run: Any) -> None:
    run = load_run(make_run(tmp_path / "r", meta={"label": "e", "seed": 0}, requests=[]))
    assert list(violations_over_time(run).columns) == ["t_s", "requests", "violations", "rate"]
    assert violations_over_time(run).empty
    assert list(demand_vs_replicas(run).columns) == ["t_s", "ready", "starting", "demand"]
    assert list(demand_vs_replicas(run, ["nobody"]).columns) == [
        "t_s",
        "ready",
        "starting",
        "demand",
    ]


def test_edges_of_the_measured_window_and_meta_fields(tmp_path: Path, make_run: Any) -> None:
    run = make_run(
        tmp_path / "r",
        # no duration_s: the window ends at the last request end or timeline sample
        meta={"label": "e", "seed": 0, "warmup_s": 0.5, "policy_index": 3, "scheduler_cpu_s": 2},
        requests=[
            "1,b,workflow,0.2,0.2,0.4,0.2,200,true,true,1,1.0,",  # before the warm-up
            "2,b,workflow,0.5,0.5,0.7,0.2,200,true,false,0,1.0,",  # exactly at its end: kept
            "3,b,workflow,1.0,1.0,1.2,0.2,500,false,false,0,1.0,boom",
            "4,b,workflow,2.0,2.0,2.2,0.2,200,true,false,0,1.0,",
            "5,a,workflow,3.0,3.0,7.5,4.5,200,true,false,0,10.0,",
        ],
        stages=[
            "1,s,f,0.2,0.4,0.2,1,200",
            "2,s,f,0.5,0.7,0.2,0,200",
            "5,s,f,3.0,7.5,4.5,0,200",
        ],
        timeline=["0,f,1,0,0,0,1,1024", "5,f,1,0,0,0,1,1024"],
        decisions=[{"t_s": i, "decide_s": i / 1000} for i in range(101)],
    )
    m = compute_metrics(load_run(run))
    assert (m.requests, m.errors) == (4, 1)
    assert m.error_rate == pytest.approx(0.25)
    assert list(m.by_workflow) == ["a", "b"]  # sorted by name
    assert [w["requests"] for w in m.by_workflow.values()] == [1.0, 3.0]
    assert m.cold_start_rate_by_function == {"f": 0.0}  # request 1's cold stage is excluded
    assert m.cost.invocations == 2
    assert m.cost.window_s == pytest.approx(7.5 - 0.5)
    assert m.decide_mean_s == pytest.approx(0.05)
    assert m.decide_p99_s == pytest.approx(0.099)  # the 99th percentile, not the maximum
    assert m.scheduler_cpu_s == 2.0 and m.order == 3


def test_window_without_duration_or_requests_ends_at_the_timeline(
    tmp_path: Path, make_run: Any
) -> None:
    run = make_run(
        tmp_path / "r",
        meta={"label": "idle", "seed": 0, "warmup_s": 0.5},
        requests=[],
        timeline=["0,f,1,0,0,0,1,1024", "4,f,1,0,0,0,1,1024"],
    )
    m = compute_metrics(load_run(run))
    assert m.cost.window_s == pytest.approx(3.5)
    assert m.cost.cpu_core_s == pytest.approx(3.5)
    assert math.isnan(m.scheduler_cpu_s) and m.order == 0


def test_cost_defaults_idle_cpu_and_prices_by_hand() -> None:
    # rows out of order on purpose; g has no limits recorded (1 core, 128 MiB assumed)
    tl = pd.DataFrame(
        {
            "t_s": [4.0, 0.0, 0.0, 2.0, 8.0],  # the sample after the window charges nothing
            "function": ["f", "g", "f", "f", "f"],
            "replicas_ready": [0, 1, 2, 1, 5],
            "replicas_starting": [0, 0, 1, 0, 0],
            "busy": [0, 0, 1, 3, 0],  # busy above ready (max_inflight > 1) is not negative idle
            "queued": [0, 0, 0, 0, 0],
            "cpu_cores": [2.0, float("nan"), 2.0, 2.0, 2.0],
            "memory_mb": [2048.0, float("nan"), 2048.0, 2048.0, 2048.0],
        }
    )
    iv = timeline_intervals(tl, start_s=0.0, end_s=6.0)
    assert list(iv.columns) == [*tl.columns, "dt_s"]
    assert iv[["function", "t_s", "dt_s"]].values.tolist() == [
        ["f", 0.0, 2.0],
        ["f", 2.0, 2.0],
        ["f", 4.0, 2.0],
        ["f", 8.0, 0.0],
        ["g", 0.0, 6.0],
    ]
    c = compute_cost(tl, start_s=0.0, end_s=6.0, invocations=1_000_000)
    # f: 3 alive x 2 s + 1 x 2 s + 0 x 2 s = 8 replica-s -> 16 core-s, 16 GiB-s
    #    idle: 1 ready without work x 2 s -> 4 core-s, 4 GiB-s
    # g: 1 x 6 s at 1 core and 0.125 GiB, all idle
    assert c.by_function == {
        "f": pytest.approx(
            {"cpu_core_s": 16.0, "memory_gib_s": 16.0, "idle_cpu_core_s": 4.0,
             "idle_memory_gib_s": 4.0, "replica_s": 8.0, "idle_replica_s": 2.0}
        ),
        "g": pytest.approx(
            {"cpu_core_s": 6.0, "memory_gib_s": 0.75, "idle_cpu_core_s": 6.0,
             "idle_memory_gib_s": 0.75, "replica_s": 6.0, "idle_replica_s": 6.0}
        ),
    }  # fmt: skip
    assert (c.cpu_core_s, c.memory_gib_s) == pytest.approx((22.0, 16.75))
    assert (c.idle_cpu_core_s, c.idle_memory_gib_s) == pytest.approx((10.0, 4.75))
    assert c.decoupled_cpu_usd == pytest.approx(22.0 * 0.000024)
    assert c.decoupled_memory_usd == pytest.approx(16.75 * 0.0000025)
    assert c.decoupled_idle_usd == pytest.approx(10.0 * 0.000024 + 4.75 * 0.0000025)
    assert c.lambda_memory_usd == pytest.approx(16.75 * 0.0000166667)
    assert c.lambda_requests_usd == pytest.approx(0.20)
    assert c.lambda_usd == pytest.approx(16.75 * 0.0000166667 + 0.20)
    empty = compute_cost(tl.iloc[:0], start_s=2.0, end_s=1.0, invocations=3)
    assert (empty.cpu_core_s, empty.window_s, empty.invocations) == (0.0, 0.0, 3)


def test_stages_of_unknown_requests_and_filtered_functions(tmp_path: Path, make_run: Any) -> None:
    run = make_run(
        tmp_path / "r",
        meta={"label": "s", "seed": 0, "duration_s": 5},
        requests=[
            "1,wa,workflow,1,1,1.5,0.5,200,true,false,0,1.0,",
            "2,wb,workflow,2,2,2.5,0.5,200,true,false,0,1.0,",
        ],
        stages=[
            "1,a,f,1.0,1.5,0.5,0,200",
            "2,b,f,2.0,2.5,0.5,1,200",
            "99,a,f,3.0,3.2,0.2,1,200",  # its request is not in requests.csv (a killed run)
        ],
    )
    m = compute_metrics(load_run(run))
    assert set(m.stage_latency_s) == {"wa/a", "wb/b", "?/a"}
    assert m.stage_latency_s["?/a"]["p50"] == pytest.approx(0.2)
    assert m.cold_start_rate_by_function == pytest.approx({"f": 2 / 3})
    assert m.cost.invocations == 3
    later = make_run(
        tmp_path / "w",
        meta={"label": "w", "seed": 0, "duration_s": 5, "warmup_s": 2},
        requests=[
            "1,wa,workflow,1,1,1.5,0.5,200,true,false,0,1.0,",
            "2,wb,workflow,3,3,3.5,0.5,200,true,false,0,1.0,",
        ],
        stages=["1,a,g,1.0,1.5,0.5,1,200", "2,b,f,3.0,3.5,0.5,0,200"],
    )
    # g ran only in the warm-up: it is not listed with a rate of nothing
    assert compute_metrics(load_run(later)).cold_start_rate_by_function == {"f": 0.0}


def test_each_sample_holds_until_the_same_functions_next_one() -> None:
    tl = pd.DataFrame(
        {
            "t_s": [0.0, 0.0, 2.0, 1.0],
            "function": ["f", "g", "g", "h"],
            "replicas_ready": [1, 1, 3, 1],
        }
    )
    iv = timeline_intervals(tl, start_s=0.0, end_s=4.0)
    assert iv[["function", "t_s", "dt_s"]].values.tolist() == [
        ["f", 0.0, 4.0],
        ["g", 0.0, 2.0],  # until g's next sample, not the window's end
        ["g", 2.0, 2.0],
        ["h", 1.0, 3.0],  # nothing charged before a function's first sample
    ]
