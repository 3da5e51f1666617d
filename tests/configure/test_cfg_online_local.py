"""The online configurator on live traffic (local backend, real torch replicas): the memory
floor comes from the peak memory the platform reads, so no trial OOM-kills a torch stage."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from functions.workloads import make_payload
from scheduler.clock import WallClock
from scheduler.daemon import Daemon
from scheduler.policies.aquatope_config import AquatopeConfigPolicy
from testbed.backends import connect
from testbed.core.config import Limits
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
TORCH_STAGES = ("object-detection", "digit-classifier")


@pytest.mark.slow
def test_live_trials_stay_above_the_peak_memory_the_platform_reads(tmp_path: Path) -> None:
    catalog = load_workflows()
    ml = catalog.get("ml-pipeline")
    stack = load_stack(REPO / "stack.yml")
    # a stack that under-declares what its functions need: 128 MB requested, torch needs ~300
    specs = [replace(stack[f], requests=Limits(cpu_cores=0.5, memory_mb=128)) for f in ml.functions]
    with connect("local", state_dir=tmp_path / "state") as platform:
        for spec in specs:
            platform.deploy(spec)
            platform.scale(spec.name, replicas=1)
        wait_until(
            lambda: all(platform.status(s.name).replicas_ready == 1 for s in specs),
            timeout_s=120,
            interval_s=0.5,
        )
        config = AquatopeConfigPolicy(
            workflow=ml.name, method="random", budget=4, trial_ticks=3, min_invocations=3, seed=1
        )
        daemon = Daemon(
            platform, config, clock=WallClock(), tick_s=1.0, workflows=catalog.workflows
        )
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        thread.start()
        failed: list[str] = []
        sent = 0
        try:
            rng = random.Random(0)
            deadline = time.monotonic() + 90
            while config.trials_total < 4 and time.monotonic() < deadline:
                body = make_payload(ml.name, rng)  # a real image for the pipeline
                result = platform.invoke(ml.name, body, workflow=True, timeout_s=60)
                sent += 1
                if not result.ok:
                    failed.append(result.body.decode(errors="replace")[:200])
        finally:
            stop.set()
            thread.join(timeout=30)
        peaks = {
            f: max(r.peak_memory_mb or 0.0 for r in platform.status(f).replicas)
            for f in TORCH_STAGES
        }
        exits = {f: platform.status(f).last_exit for f in ml.functions}
    assert config.trials_total >= 3, f"only {config.trials_total} trials in {sent} requests"
    for f, peak in peaks.items():
        assert peak > 100.0  # torch is loaded: the platform read a real peak
        assert config.floor_mb(f) >= peak  # learned from the platform's own figure, + margin
        assert all(s.config[f].memory_mb >= peak for s in config.samples)
    assert not failed, failed[:3]
    assert not any("OOM" in e or "oom" in e for e in exits.values()), exits
