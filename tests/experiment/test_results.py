"""The results writer: partial runs stay hidden and incomplete; a killed run harms nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed.core.errors import ConfigError
from testbed.experiment.results import (
    REQUESTS_COLUMNS,
    STAGES_COLUMNS,
    TIMELINE_COLUMNS,
    RunWriter,
    TimelineWriter,
    find_runs,
    load_run,
    read_meta,
    write_csv,
)

CHILD = """
import sys, time
from testbed.experiment.results import RunWriter, TimelineWriter
w = RunWriter(sys.argv[1], "p", 1, {"policy": "p", "note": "second attempt"})
w.start()
tl = TimelineWriter(w.path / "timeline.csv")
i = 0
while True:  # a run that never ends on its own
    tl.write([{"t_s": i * 0.01, "function": "f", "replicas_ready": 1}])
    i += 1
    time.sleep(0.01)
"""


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _finished_run(root: Path) -> Path:
    writer = RunWriter(root, "p", 1, {"policy": "p", "note": "first attempt"})
    writer.start()
    write_csv(
        writer.path / "requests.csv",
        [
            {
                "request_id": 1,
                "workflow": "wf",
                "kind": "workflow",
                "latency_s": 0.2,
                "ok": True,
                "status": 200,
                "qos_target_s": 1.0,
            }
        ],
        REQUESTS_COLUMNS,
    )
    tl = TimelineWriter(writer.path / "timeline.csv")
    tl.write(
        [{"t_s": 0.0, "function": "f", "replicas_ready": 2, "cpu_cores": 0.5, "memory_mb": 256.0}]
    )
    tl.close()
    return writer.finish(duration_s=1.0)


def test_finish_moves_the_run_into_place(tmp_path: Path) -> None:
    final = _finished_run(tmp_path)
    assert final == tmp_path / "p" / "seed-1"
    assert not (tmp_path / "p" / ".seed-1.partial").exists()
    meta = read_meta(final)
    assert meta["complete"] is True and meta["label"] == "p" and meta["seed"] == 1
    run = load_run(final)
    assert run.requests["ok"].tolist() == [True]
    assert run.timeline["replicas_ready"].tolist() == [2]
    assert find_runs([tmp_path]) == [final]


def test_killed_run_is_incomplete_and_earlier_run_untouched(tmp_path: Path) -> None:
    final = _finished_run(tmp_path)
    before = _digest(final)
    partial = tmp_path / "p" / ".seed-1.partial"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            timeline = partial / "timeline.csv"
            if timeline.is_file() and timeline.read_text().count("\n") > 5:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child run never started writing")
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert _digest(final) == before  # the earlier run of the same label and seed
    assert read_meta(final)["note"] == "first attempt"
    killed = read_meta(partial)
    assert killed["complete"] is False and killed["note"] == "second attempt"
    # readers skip it by default, see it when asked, and can still load what it wrote
    assert find_runs([tmp_path]) == [final]
    assert partial in find_runs([tmp_path], include_incomplete=True)
    assert len(load_run(partial).timeline) >= 5  # header + at least 5 rows were seen


def test_rerun_replaces_only_when_complete(tmp_path: Path) -> None:
    _finished_run(tmp_path)
    writer = RunWriter(tmp_path, "p", 1, {"policy": "p", "note": "rerun"})
    writer.start()
    writer.fail("RuntimeError: boom")
    assert read_meta(tmp_path / "p" / "seed-1")["note"] == "first attempt"
    assert read_meta(writer.path)["error"] == "RuntimeError: boom"
    writer2 = RunWriter(tmp_path, "p", 1, {"policy": "p", "note": "rerun"})
    writer2.start()  # clears the failed partial
    final = writer2.finish()
    assert read_meta(final)["note"] == "rerun"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["seed-1"]


def test_find_runs_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such results directory"):
        find_runs([tmp_path / "missing"])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "meta.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(ConfigError, match="no complete runs"):
        find_runs([tmp_path])


def test_reader_accepts_true_false_and_01(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "meta.json").write_text('{"complete": true}')
    pd.DataFrame(
        {
            "request_id": [1, 2, 3],
            "workflow": ["w"] * 3,
            "latency_s": [0.1] * 3,
            "ok": ["True", "0", "true"],
            "cold_start": ["1", "False", ""],
        }
    ).to_csv(run / "requests.csv", index=False)
    req = load_run(run).requests
    assert req["ok"].tolist() == [True, False, True]
    assert req["cold_start"].tolist() == [True, False, False]
    assert req["status"].tolist() == [0, 0, 0]  # missing optional column defaulted


def _run_with_decisions(run: Path, text: str) -> Path:
    run.mkdir()
    (run / "meta.json").write_text('{"complete": false}')
    pd.DataFrame({"request_id": [1], "workflow": ["w"], "latency_s": [0.1], "ok": [True]}).to_csv(
        run / "requests.csv", index=False
    )
    (run / "decisions.jsonl").write_text(text)
    return run


def test_a_torn_last_decision_line_is_dropped(tmp_path: Path) -> None:
    # a run killed while appending leaves half a JSON line at the end: the rest still loads
    run = _run_with_decisions(tmp_path / "r", '{"t_s": 1.0}\n\n{"t_s": 2.0}\n{"t_s": 3.')
    assert load_run(run).decisions == [{"t_s": 1.0}, {"t_s": 2.0}]


def test_a_broken_decision_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    run = _run_with_decisions(tmp_path / "r", '{"t_s": 1.0}\n{"t_s": \n{"t_s": 3.0}\n')
    with pytest.raises(ConfigError, match=r"decisions.jsonl: line 2: invalid JSON"):
        load_run(run)


def test_writers_format_and_meta(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "p", 2, {"policy": "p", "trace": Path("traces/x.csv")})
    writer.start()
    assert (writer.path / "meta.json").read_text().startswith('{\n  "policy": "p",\n')
    assert read_meta(writer.path)["trace"] == "traces/x.csv"  # paths written as text
    tl = TimelineWriter(writer.path / "timeline.csv")
    tl.write([{"t_s": 0.25, "function": "f", "replicas_ready": 1, "cpu_cores": float("nan")}])
    tl.write([{"t_s": 1.0 / 3.0, "function": "g", "replicas_ready": True, "memory_mb": 256.0}])
    tl.close()
    assert tl.rows == 2
    lines = (writer.path / "timeline.csv").read_bytes().decode().split("\n")
    assert lines == [
        ",".join(TIMELINE_COLUMNS),
        "0.25,f,1,0,0,0,nan,nan",  # floats trimmed, NaN as nan, missing counts 0
        "0.333333,g,1,0,0,0,nan,256",  # six decimals at most; booleans as 0/1
        "",
    ]
    write_csv(
        writer.path / "requests.csv",
        [{"request_id": 7, "workflow": "wf", "latency_s": 0.2, "ok": True, "status": 200}],
        REQUESTS_COLUMNS,
    )
    row = pd.read_csv(writer.path / "requests.csv", keep_default_na=False).iloc[0]
    assert (row["latency_s"], row["ok"], row["cold_start"], row["status"]) == (0.2, 1, 0, 200)
    frame = pd.DataFrame({"request_id": [8], "stage": ["a"], "function": ["f"], "cold_start": [1]})
    write_csv(writer.path / "stages.csv", frame, STAGES_COLUMNS)  # a DataFrame works too
    assert (writer.path / "stages.csv").read_text().splitlines()[1].startswith("8,a,f,")
    final = writer.finish(duration_s=1.5)
    meta = read_meta(final)
    assert meta["duration_s"] == 1.5 and meta["complete"] is True
    assert 0 < meta["started_unix_s"] <= meta["finished_unix_s"]
    run = load_run(final)
    assert run.requests["latency_s"].tolist() == [0.2]
    assert run.requests["workflow"].tolist() == ["wf"]


def test_a_failed_run_stays_hidden_and_says_why(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "p", 3, {"policy": "p"})
    writer.start()
    writer.fail("the gateway went away")
    meta = read_meta(writer.path)
    assert meta["complete"] is False and meta["error"] == "the gateway went away"
    shutil.rmtree(writer.path)
    writer.path.write_text("a file where the run directory was")
    writer.fail("again")  # it cannot be recorded there, but must not raise


def test_a_run_with_only_meta_loads_empty_tables_with_their_columns(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "meta.json").write_text('{"complete": true}')
    (run / "stages.csv").write_text("")
    loaded = load_run(run)
    assert list(loaded.requests.columns) == list(REQUESTS_COLUMNS) and loaded.requests.empty
    assert list(loaded.stages.columns) == list(STAGES_COLUMNS) and loaded.stages.empty
    assert str(loaded.requests["ok"].dtype) == "bool"
    assert str(loaded.requests["latency_s"].dtype) == "float64"
    assert loaded.decisions == []


def test_empty_integer_fields_read_as_zero(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "meta.json").write_text('{"complete": true}')
    (run / "requests.csv").write_text(
        "request_id,workflow,latency_s,ok,status\n1,w,0.1,1,\n2,w,NaN,0,503\n"
    )
    req = load_run(run).requests
    assert req["status"].tolist() == [0, 503] and str(req["status"].dtype) == "int64"
    assert np.isnan(req["latency_s"].iloc[1])


def test_hidden_directories_are_skipped_even_when_complete(tmp_path: Path) -> None:
    final = _finished_run(tmp_path)
    leftover = tmp_path / "p" / ".seed-1.old-123"  # what a crash inside finish() leaves
    shutil.copytree(final, leftover)
    assert find_runs([tmp_path]) == [final]
    assert find_runs([final]) == [final]  # a run directory given directly
    assert leftover in find_runs([tmp_path], include_incomplete=True)
