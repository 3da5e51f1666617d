"""Aggregation across seeds (t-intervals), paired ratios, and the `compare` command."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from testbed.cli import cli
from testbed.core.errors import ConfigError
from testbed.report.compare import compare_runs, load_metrics, t_interval

T_975_DF2 = 4.302652729911275  # Student t quantile, 97.5%, 2 degrees of freedom


def _experiment(root: Path, make_run: Any, slow_s: dict[str, list[float]]) -> Path:
    """Per label, one run per seed: 4 requests (target 1 s); ``slow_s`` sets request 1's latency."""
    for label, latencies in slow_s.items():
        for seed, slow in enumerate(latencies):
            make_run(
                root / label / f"seed-{seed}",
                meta={"label": label, "seed": seed, "duration_s": 10},
                requests=[
                    f"1,wf,workflow,0,0,{slow},{slow},200,1,{int(slow > 1)},{int(slow > 1)},1.0,",
                    "2,wf,workflow,1,1,1.1,0.1,200,1,0,0,1.0,",
                    "3,wf,workflow,2,2,2.1,0.1,200,1,0,0,1.0,",
                    "4,wf,workflow,3,3,3.1,0.1,200,1,0,0,1.0,",
                ],
                timeline=[f"0,f,{1 if label == 'warm' else 0},0,0,0,1,1024"],
            )
    return root


def test_t_interval_matches_hand_computation() -> None:
    est = t_interval([1.0, 2.0, 3.0])
    assert est.mean == pytest.approx(2.0)
    assert est.half_width == pytest.approx(T_975_DF2 * 1.0 / math.sqrt(3))
    one = t_interval([5.0])
    assert one.mean == 5.0 and math.isnan(one.half_width)
    assert t_interval([]).n == 0


def test_compare_means_cis_and_paired_ratios(tmp_path: Path, make_run: Any) -> None:
    # cold: request 1 is a 2 s cold start in seeds 0 and 1, fine in seed 2
    root = _experiment(tmp_path, make_run, {"warm": [0.1, 0.1, 0.1], "cold": [2.0, 2.0, 0.1]})
    comp = compare_runs(load_metrics([root]), baseline="warm")
    cold = comp.get("cold")
    assert cold.seeds == (0, 1, 2)
    viol = cold.metrics["qos_violation_pct"]
    # per-seed 25, 25, 0 %
    assert viol.mean == pytest.approx(50 / 3)
    sd = math.sqrt(((25 - 50 / 3) ** 2 * 2 + (50 / 3) ** 2) / 2)
    assert viol.half_width == pytest.approx(T_975_DF2 * sd / math.sqrt(3))
    assert cold.metrics["cold_start_pct"].mean == pytest.approx(50 / 3)
    # warm has zero violations: no ratio can be formed
    assert math.isnan(cold.ratios["qos_violation_pct"].mean)
    # cost: warm pays 1 replica x 10 s, cold pays nothing -> ratio to baseline 0
    assert cold.ratios["cost_decoupled_musd"].mean == pytest.approx(0.0)
    assert comp.get("warm").ratios["p50_ms"].mean == pytest.approx(1.0)
    assert comp.get("warm").metrics["cost_decoupled_musd"].mean == pytest.approx(
        1e6 * (10 * 0.000024 + 10 * 0.0000025)
    )
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        compare_runs(load_metrics([root]), baseline="nope")


def test_compare_command_prints_table_and_json(tmp_path: Path, make_run: Any) -> None:
    root = _experiment(tmp_path / "exp", make_run, {"warm": [0.1, 0.1], "cold": [2.0, 0.1]})
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(
        cli, ["compare", str(root), "--baseline", "warm", "--json", str(out)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "warm (baseline)" in result.output and "cold" in result.output
    assert "ratio to 'warm'" in result.output
    data = json.loads(out.read_text())
    cold = next(p for p in data["policies"] if p["label"] == "cold")
    assert cold["metrics"]["qos_violation_pct"]["mean"] == pytest.approx(12.5)
    assert cold["metrics"]["qos_violation_pct"]["n"] == 2


def test_compare_skips_incomplete_and_errors_cleanly(tmp_path: Path, make_run: Any) -> None:
    root = _experiment(tmp_path / "exp", make_run, {"warm": [0.1]})
    partial = make_run(
        root / "warm" / ".seed-1.partial",
        meta={"label": "warm", "seed": 1, "complete": False},
        requests=["1,wf,workflow,0,0,9,9,200,1,1,1,1.0,"],
    )
    assert partial.is_dir()
    comp = compare_runs(load_metrics([root]))
    assert comp.get("warm").seeds == (0,)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["compare", str(empty)])
    assert result.exit_code == 1
    assert "no complete runs" in result.output


def test_compare_names_interrupted_runs_instead_of_dropping_them(
    tmp_path: Path, make_run: Any
) -> None:
    root = _experiment(tmp_path / "exp", make_run, {"warm": [0.1]})
    make_run(
        root / "cold" / ".seed-0.partial",
        meta={"label": "cold", "seed": 0, "complete": False, "error": "KeyboardInterrupt: "},
        requests=["1,wf,workflow,0,0,9,9,200,1,1,1,1.0,"],
    )
    result = CliRunner().invoke(cli, ["compare", str(root)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "note: not compared, run did not finish" in result.stderr
    assert "cold/.seed-0.partial (KeyboardInterrupt" in result.stderr
