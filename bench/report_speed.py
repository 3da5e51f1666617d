"""Time to compute every metric and the comparison for 1 million requests (target < 10 s).

Writes a synthetic results directory (two policies; per policy 500k requests over two
workflows with 3 stages each, an hour-long timeline of 10 functions sampled every second, a
decision per second), then times, from the files: loading, ``compute_metrics`` and
``compare_runs`` (the work behind ``aquatope compare``), and separately the HTML report.

Usage: ``python bench/report_speed.py [--requests N] [--keep DIR]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.experiment.results import (
    REQUESTS_COLUMNS,
    STAGES_COLUMNS,
    TIMELINE_COLUMNS,
    RunWriter,
    write_csv,
)
from testbed.report.compare import compare_runs, load_metrics

STAGES_PER_REQUEST = 3
FUNCTIONS = 10
DURATION_S = 3600.0


def _synthetic_run(root: Path, label: str, index: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    writer = RunWriter(
        root,
        label,
        seed,
        {"policy": label, "policy_index": index, "duration_s": DURATION_S, "warmup_s": 60.0},
    )
    writer.start()
    intended = np.sort(rng.uniform(0, DURATION_S, n))
    sent = intended + rng.exponential(0.001, n)
    cold = rng.random(n) < (0.05 if index else 0.01)
    latency = rng.gamma(2.0, 0.05, n) + cold * rng.uniform(0.5, 2.0, n)
    ok = rng.random(n) > 0.002
    workflow = np.where(rng.random(n) < 0.5, "ml-pipeline", "social-read-home")
    requests = pd.DataFrame(
        {
            "request_id": np.arange(n),
            "workflow": workflow,
            "kind": "workflow",
            "intended_s": intended,
            "sent_s": sent,
            "end_s": sent + latency,
            "latency_s": latency,
            "status": np.where(ok, 200, 502),
            "ok": ok,
            "cold_start": cold,
            "cold_stages": cold.astype(int),
            "qos_target_s": np.where(workflow == "ml-pipeline", 0.5, 0.1),
            "error": "",
        }
    )
    write_csv(writer.path / "requests.csv", requests, REQUESTS_COLUMNS)
    k = STAGES_PER_REQUEST
    rid = np.repeat(np.arange(n), k)
    frac = np.tile(np.arange(k) / k, n)
    start = np.repeat(sent, k) + frac * np.repeat(latency, k)
    dur = np.repeat(latency, k) / k
    stage_idx = np.tile(np.arange(k), n)
    stages = pd.DataFrame(
        {
            "request_id": rid,
            "stage": np.array([f"s{i}" for i in range(k)])[stage_idx],
            "function": np.array([f"fn-{i}" for i in range(FUNCTIONS)])[
                (stage_idx + 3 * (np.repeat(workflow, k) == "ml-pipeline")) % FUNCTIONS
            ],
            "start_s": start,
            "end_s": start + dur,
            "duration_s": dur,
            "cold_start": np.repeat(cold, k) & (stage_idx == 0),
            "status": 200,
        }
    )
    write_csv(writer.path / "stages.csv", stages, STAGES_COLUMNS)
    t = np.arange(0, DURATION_S, 1.0)
    timeline = pd.DataFrame(
        {
            "t_s": np.repeat(t, FUNCTIONS),
            "function": np.tile([f"fn-{i}" for i in range(FUNCTIONS)], t.size),
            "replicas_ready": rng.integers(0, 4, t.size * FUNCTIONS),
            "replicas_starting": rng.integers(0, 2, t.size * FUNCTIONS),
            "busy": rng.integers(0, 3, t.size * FUNCTIONS),
            "queued": 0,
            "cpu_cores": 0.5,
            "memory_mb": 256.0,
        }
    )
    write_csv(writer.path / "timeline.csv", timeline, TIMELINE_COLUMNS)
    with (writer.path / "decisions.jsonl").open("w") as handle:
        for i in range(int(DURATION_S)):
            handle.write(
                json.dumps(
                    {
                        "t_s": i,
                        "policy": label,
                        "valid": True,
                        "decide_s": float(rng.gamma(2, 0.0005)),
                        "functions": {},
                        "actions": [],
                    }
                )
                + "\n"
            )
    writer.finish(scheduler_cpu_s=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="keep the data here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="report-speed-"))
    try:
        t = time.perf_counter()
        half = args.requests // 2
        _synthetic_run(root, "baseline", 0, half, seed=1)
        _synthetic_run(root, "candidate", 1, args.requests - half, seed=1)
        gen_s = time.perf_counter() - t
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        print(
            f"synthetic data: {args.requests} requests, "
            f"{args.requests * STAGES_PER_REQUEST} stage rows, {size_mb:.0f} MiB "
            f"(written in {gen_s:.1f} s)"
        )

        t = time.perf_counter()
        metrics = load_metrics([root])
        comp = compare_runs(metrics, baseline="baseline")
        compare_s = time.perf_counter() - t
        print(f"load + metrics + compare: {compare_s:.2f} s (target < 10 s)")
        viol = comp.get("candidate").metrics["qos_violation_pct"].mean
        print(f"  candidate QoS violations {viol:.2f} %, requests {comp.get('candidate').requests}")

        from testbed.report.html import write_report

        t = time.perf_counter()
        write_report([root], root / "report.html")
        report_s = time.perf_counter() - t
        print(f"full HTML report (loads again, 4 figures): {report_s:.2f} s")
        print(
            json.dumps(
                {
                    "requests": args.requests,
                    "stage_rows": args.requests * STAGES_PER_REQUEST,
                    "data_mib": round(size_mb, 1),
                    "metrics_compare_s": round(compare_s, 3),
                    "html_report_s": round(report_s, 3),
                    "target_s": 10.0,
                    "meets_target": compare_s < 10.0,
                }
            )
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
