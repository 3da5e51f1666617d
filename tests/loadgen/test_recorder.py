"""The recorder: rows per docs/results.md, partial flushes, atomic ordered final files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from loadgen.record import CONTEXT_KEY, REQUEST_COLUMNS, STAGE_COLUMNS, Recorder, RequestRecord


def _rec(i: int, *, status: int = 200, stages: tuple = ()) -> RequestRecord:  # type: ignore[type-arg]
    return RequestRecord(
        request_id=i,
        workflow="wf",
        kind="workflow",
        intended_s=i * 0.1,
        qos_target_s=2.0,
        sent_s=i * 0.1 + 0.002,
        end_s=i * 0.1 + 0.05,
        status=status,
        cold_start=False,
        stages=stages,
    )


def test_rows_follow_the_schema_and_end_up_ordered(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    rec = Recorder(tmp_path, t0_unix_s=t0, late_after_s=0.001)
    stage = {
        "stage": "s1",
        "function": "f1",
        "start_s": t0 + 1.0,
        "end_s": t0 + 1.25,
        "duration_s": 0.25,
        "cold_start": True,
        "status": 200,
        "handler_s": 0.004,
    }
    silent = {**stage, "stage": "s2", "cold_start": False, "handler_s": None}  # says nothing
    rec.on_request(context={CONTEXT_KEY: _rec(2, stages=(stage, silent))})
    rec.on_request(context={CONTEXT_KEY: _rec(0)})
    rec.on_request(context={})  # not ours: ignored
    rec.flush(max_rows=1)
    partial = tmp_path / ".requests.csv.partial"
    assert partial.exists() and len(partial.read_text().splitlines()) == 2
    rec.on_request(context={CONTEXT_KEY: _rec(1, status=503)})
    assert rec.pending == 2
    live = rec.live()
    assert live.completed == 3 and live.errors == 1 and live.late == 3
    rec.finalize()
    assert not partial.exists()
    with (tmp_path / "requests.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == REQUEST_COLUMNS
    assert [r["request_id"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["ok"] == "False" and rows[1]["status"] == "503"
    assert rows[2]["cold_start"] == "True" and rows[2]["cold_stages"] == "1"
    assert math.isclose(float(rows[0]["latency_s"]), 0.048, abs_tol=1e-6)
    with (tmp_path / "stages.csv").open() as fh:
        stages = list(csv.DictReader(fh))
    assert tuple(stages[0]) == STAGE_COLUMNS
    assert stages[0]["start_s"] == "1.000000" and stages[0]["end_s"] == "1.250000"
    assert stages[0]["request_id"] == "2" and stages[0]["function"] == "f1"
    assert stages[0]["handler_s"] == "0.004000" and stages[1]["handler_s"] == ""
