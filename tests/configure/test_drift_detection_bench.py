"""bench/drift_detection.py runs both detectors on every load and latency scenario."""

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
    scenarios = [*bench.SCENARIOS, *bench.LATENCY_SCENARIOS]
    assert {(r["scenario"], r["detector"]) for r in rows} == {
        (s, d) for s in scenarios for d in ("shift", "cusum")
    }
    doubled = next(
        r for r in rows if r["scenario"] == "bursty-doubled" and r["detector"] == "shift"
    )
    assert doubled["detected"] == "2/2" and doubled["lag_min_max"] <= 6
    with pytest.raises(SystemExit):
        bench.main(["--reference", "2"])
