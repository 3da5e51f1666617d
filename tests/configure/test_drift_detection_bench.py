"""bench/drift_detection.py runs both detectors on every scenario and reports each."""

from __future__ import annotations

import json

import pytest

from tests.helpers import bench_module


def test_the_bench_reports_every_scenario_for_both_detectors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = bench_module("drift_detection")
    bench.main(["--seeds", "2", "--hours", "0.5", "--after-min", "6"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["scenario"], r["detector"]) for r in rows} == {
        (s, d) for s in bench.SCENARIOS for d in ("load-shift", "cusum")
    }
    doubled = next(
        r for r in rows if r["scenario"] == "bursty-doubled" and r["detector"] == "load-shift"
    )
    assert doubled["detected"] == "2/2" and doubled["lag_min_max"] <= 6
    with pytest.raises(SystemExit):
        bench.main(["--reference", "2"])
