"""bench/drift_detection.py runs both detectors on every scenario and reports each."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_bench_reports_every_scenario_for_both_detectors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = importlib.util.spec_from_file_location(
        "drift_detection", REPO / "bench" / "drift_detection.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["drift_detection"] = bench
    spec.loader.exec_module(bench)
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
