"""The 60-second soak with faults (bench/soak.py) in CI: no request lost and no 5xx outside
an injected fault's window while replicas, the daemon and the gateway are killed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sixty_second_soak_loses_nothing() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "soak.py"),
            "--duration-s",
            "60",
            "--kill-every-s",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert lines, done.stderr[-2000:]
    report = json.loads(lines[-1])
    assert report["scheduled"] >= 250 and report["lost"] == 0, report
    assert report["unattributed_5xx"] == 0, report["unattributed_examples"]
    kinds = {f["kind"] for f in report["faults"]}
    assert {"replica-kill", "oom-kill", "daemon-restart", "code-update", "gateway-kill"} <= kinds
    # recovery takes up to ~15 s on an idle 2-core machine (a torch replica restarts) and
    # about 20 s on a loaded one: the bound only says "it recovers"
    for fault in report["faults"]:
        if fault["kind"] != "oom-kill":  # its target (noop) takes no traffic afterwards
            assert fault["recovered_s"] is not None and fault["recovered_s"] < 60.0, fault
    assert done.returncode == 0
    # a soak that passed leaves nothing behind in the temporary directory
    assert report["state_dir_kept"] is False and not Path(report["state_dir"]).exists()
