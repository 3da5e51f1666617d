"""End to end on the local backend: a burst at a workflow's entry warms the downstream stage
before its first request (real gateway, real replica processes, wall-clock daemon)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest

from scheduler.clock import WallClock
from scheduler.daemon import Daemon
from scheduler.policies.aquatope_prewarm import AquatopePrewarmPolicy
from testbed.core.platform import FunctionSpec

ENTRY = """
    import hashlib

    def handle(event, context):
        # real work of one to a few seconds: the downstream replica starts meanwhile
        digest = b"x"
        for _ in range(1_500_000):
            digest = hashlib.sha256(digest).digest()
        return {"statusCode": 200, "body": digest.hex()}
"""
LEAF = """
    def handle(event, context):
        return {"statusCode": 200, "body": "ok"}
"""
WORKFLOW = """
    name: pw-chain
    qos: {percentile: 95, target_s: 30}
    stages:
      - name: pw-entry
      - name: pw-leaf
        after: [pw-entry]
"""


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(textwrap.dedent(text))
    return folder


@pytest.mark.slow
def test_downstream_warm_before_its_first_request(tmp_path: Path) -> None:
    from testbed.backends import connect
    from testbed.core.workflows import load_workflows

    wf_dir = tmp_path / "workflows"
    wf_dir.mkdir()
    (wf_dir / "pw-chain.yaml").write_text(textwrap.dedent(WORKFLOW))
    entry = _write(tmp_path / "fn" / "pw-entry", ENTRY)
    leaf = _write(tmp_path / "fn" / "pw-leaf", LEAF)
    with connect("local", state_dir=tmp_path / "state", workflows_dir=wf_dir) as platform:
        platform.deploy(FunctionSpec(name="pw-entry", handler=str(entry)))
        platform.deploy(FunctionSpec(name="pw-leaf", handler=str(leaf)))
        policy = AquatopePrewarmPolicy(forecaster="ewma", cold_start_s=1.0, service_s=0.5)
        daemon = Daemon(
            platform,
            policy,
            clock=WallClock(),
            tick_s=0.2,
            workflows=load_workflows(wf_dir).workflows,
        )
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while daemon.ticks < 5 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the daemon's progress, not pretending to work
            assert daemon.ticks >= 5
            assert platform.status("pw-leaf").replicas_ready == 0  # nothing warm yet
            result = platform.invoke("pw-chain", b"{}", workflow=True, timeout_s=60)
            assert result.ok, result.body
            stages = {s["function"]: s for s in json.loads(result.body)["stages"]}
            assert stages["pw-entry"]["cold_start"] is True  # the first burst is unforeseeable
            assert stages["pw-leaf"]["cold_start"] is False  # warmed by the entry's burst
        finally:
            stop.set()
            thread.join(timeout=10)
