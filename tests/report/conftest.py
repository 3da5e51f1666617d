"""Helpers that write small results directories by hand (plain CSV text, as the schema says)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REQ_HEADER = (
    "request_id,workflow,kind,intended_s,sent_s,end_s,latency_s,status,ok,cold_start,"
    "cold_stages,qos_target_s,error"
)
STAGE_HEADER = "request_id,stage,function,start_s,end_s,duration_s,cold_start,status"
TL_HEADER = "t_s,function,replicas_ready,replicas_starting,busy,queued,cpu_cores,memory_mb"


def write_run(
    run_dir: Path,
    *,
    meta: dict[str, Any],
    requests: Sequence[str],
    stages: Sequence[str] = (),
    timeline: Sequence[str] = (),
    decisions: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write a run directory from literal CSV lines (without headers)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "meta.json").write_text(json.dumps({"complete": True, **meta}))
    (run_dir / "requests.csv").write_text("\n".join([REQ_HEADER, *requests]) + "\n")
    (run_dir / "stages.csv").write_text("\n".join([STAGE_HEADER, *stages]) + "\n")
    (run_dir / "timeline.csv").write_text("\n".join([TL_HEADER, *timeline]) + "\n")
    (run_dir / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    return run_dir


@pytest.fixture()
def make_run() -> Any:
    """The :func:`write_run` helper, as a fixture."""
    return write_run


@pytest.fixture()
def crafted_run(tmp_path: Path) -> Path:
    """Four requests to one workflow (target 1 s), two functions, a 10 s timeline.

    Hand-computed answers are in tests/report/test_metrics.py.
    """
    return write_run(
        tmp_path / "exp" / "p" / "seed-1",
        meta={"label": "p", "policy": "p", "seed": 1, "warmup_s": 0, "duration_s": 10},
        requests=[
            # cold twice in one request -> counted once
            "1,wf,workflow,1.0,1.0,1.5,0.5,200,true,true,2,1.0,",
            # too slow -> violation
            "2,wf,workflow,2.0,2.0,3.5,1.5,200,true,false,0,1.0,",
            # fast but failed -> violation
            "3,wf,workflow,3.0,3.0,3.2,0.2,500,false,false,0,1.0,boom",
            # transport timeout (status 0) -> violation
            "4,wf,workflow,4.0,4.0,4.3,0.3,0,false,false,0,1.0,timeout",
        ],
        stages=[
            "1,a,f1,1.0,1.3,0.3,1,200",
            "1,b,f2,1.3,1.5,0.2,1,200",
            "2,a,f1,2.0,2.5,0.5,0,200",
            "2,b,f2,2.5,3.5,1.0,0,200",
            "3,a,f1,3.0,3.1,0.1,0,200",
            "3,b,f2,3.1,3.2,0.1,0,500",
        ],
        timeline=[
            "0,f1,1,0,0,0,1,1024",
            "0,f2,0,0,0,0,0.5,512",
            "2,f2,1,0,0,0,0.5,512",
            "5,f1,2,1,1,0,1,1024",
        ],
        decisions=[
            {"t_s": 1, "policy": "p", "valid": True, "decide_s": 0.001, "functions": {}},
            {"t_s": 2, "policy": "p", "valid": True, "decide_s": 0.003, "functions": {}},
        ],
    )
