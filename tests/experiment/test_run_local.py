"""The runner end to end on the real local backend: two policies, identical trace, Ctrl-C safety."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from testbed.cli import cli
from testbed.experiment.results import find_runs, load_run, read_meta
from testbed.report.compare import compare_runs, load_metrics
from tests.helpers import cli_with_ctrl_c

REPO = Path(__file__).resolve().parents[2]

CONFIG = f"""\
name: tiny
backend: local
stack: {REPO / "stack.yml"}
workflows: [social-read-home]
trace:
  kind: bursty
  minutes: 2
  compress: 12
  options: {{rate_per_min: 40, on_min: 0.5, off_min: 0.5}}
duration_s: 8
warmup_s: 1
drain_s: 5
seeds: [3]
sample_s: 0.5
loadgen: {{timeout_s: 20, locust_csv: false}}
policies:
  - name: always-on
  - name: keep-alive
    label: scale-to-zero
    params: {{window_s: 1}}
"""

pytestmark = [pytest.mark.slow]


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def _wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_run_compare_then_interrupted_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AQUATOPE_HOME", str(tmp_path / "home"))
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["experiment", "run", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    runs = find_runs([out])
    assert [p.relative_to(out).as_posix() for p in runs] == [
        "always-on/seed-3",
        "scale-to-zero/seed-3",
    ]
    loaded = [load_run(p) for p in runs]
    for run in loaded:
        meta = run.meta
        assert meta["complete"] is True and meta["t0"] > 0
        assert meta["machine"]["cores"] >= 1 and meta["machine"]["kernel"]
        assert "numpy" in meta["versions"] and meta["config"]["name"] == "tiny"
        assert meta["scheduler_ticks"] >= 5 and meta["scheduler_cpu_s"] > 0
        assert len(run.requests) == meta["trace"]["requests"] > 10
        assert run.decisions and run.decisions[0]["policy"] == run.label
        # the resource timeline: every function sampled at least every second
        tl = run.timeline
        assert set(tl["function"]) == {"read-home-timeline", "read-post"}
        gaps = tl[tl["function"] == "read-post"]["t_s"].diff().dropna()
        assert gaps.max() <= 1.0 + 0.25
    # identical trace for both policies (same seed -> same intended send times and targets)
    a, b = (r.requests.sort_values("request_id") for r in loaded)
    pd.testing.assert_series_equal(
        a["intended_s"].reset_index(drop=True), b["intended_s"].reset_index(drop=True)
    )
    comp = compare_runs(load_metrics([out]))
    assert comp.baseline == "always-on"
    assert comp.get("always-on").metrics["cost_decoupled_musd"].mean > 0

    # a rerun interrupted (Ctrl-C) during its first run leaves the earlier results intact
    first = out / "always-on" / "seed-3"
    before = _digest(first)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cli_with_ctrl_c("experiment", "run", str(config), "-o", str(out)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = out / "always-on" / ".seed-3.partial"
    try:
        _wait_for(lambda: (partial / "timeline.csv").is_file(), 60, "the rerun to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _digest(first) == before
    killed = read_meta(partial)
    assert killed["complete"] is False and "KeyboardInterrupt" in killed["error"]
    assert [p.relative_to(out).as_posix() for p in find_runs([out])] == [
        "always-on/seed-3",
        "scale-to-zero/seed-3",
    ]
