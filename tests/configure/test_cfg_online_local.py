"""The online configurator on live traffic (local backend, real torch replicas, cgroup limits).

Where the platform reads each replica's peak memory, the floor comes from it and no trial
OOM-kills a torch stage. Where it does not (OpenFaaS CE's gateway passes no such figure), a
random search under an under-declared stack does put a torch stage under what it uses; the
kernel then refuses the limit (cgroup v1) or OOM-kills the replica (v2), and either way the
trial is rolled back in its tick and the floor raised above it.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from functions.workloads import make_payload
from scheduler.clock import WallClock
from scheduler.daemon import Daemon
from scheduler.policies.aquatope_config import AquatopeConfigPolicy
from testbed.backends import connect
from testbed.core.config import Limits
from testbed.core.platform import FunctionStatus
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
TORCH_STAGES = ("object-detection", "digit-classifier")


class PeakMemoryHidden:
    """A platform that cannot read its replicas' peak memory, as OpenFaaS CE's gateway."""

    def __init__(self, platform: Any) -> None:
        self._platform = platform

    def __getattr__(self, name: str) -> Any:
        return getattr(self._platform, name)

    @staticmethod
    def _hide(status: FunctionStatus) -> FunctionStatus:
        replicas = [replace(r, peak_memory_mb=None) for r in status.replicas]
        return replace(status, replicas=replicas)

    def list(self) -> list[FunctionStatus]:
        return [self._hide(s) for s in self._platform.list()]

    def status(self, name: str) -> FunctionStatus:
        return self._hide(self._platform.status(name))


@dataclass
class LiveTuning:
    config: AquatopeConfigPolicy
    sent: int
    failed: list[str]
    peaks: dict[str, float]
    exits: dict[str, str]


def tune_live(
    tmp_path: Path, *, budget: int, seed: int, hide_peak: bool, **options: Any
) -> LiveTuning:
    """Random-search trials of 3 one-second ticks on ml-pipeline, under a stack that
    under-declares what its functions need (128 MB requested; torch needs ~300), while one
    client sends real images back to back (at most 120 s)."""
    catalog = load_workflows()
    ml = catalog.get("ml-pipeline")
    stack = load_stack(REPO / "stack.yml")
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
            workflow=ml.name,
            method="random",
            budget=budget,
            trial_ticks=3,
            min_invocations=3,
            seed=seed,
            **options,
        )
        observed = PeakMemoryHidden(platform) if hide_peak else platform
        daemon = Daemon(
            observed, config, clock=WallClock(), tick_s=1.0, workflows=catalog.workflows
        )
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
        thread.start()
        failed: list[str] = []
        sent = 0
        try:
            rng = random.Random(0)
            deadline = time.monotonic() + 120
            while config.trials_total < budget and time.monotonic() < deadline:
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
    return LiveTuning(config, sent, failed, peaks, exits)


@pytest.mark.slow
def test_live_trials_stay_above_the_peak_memory_the_platform_reads(tmp_path: Path) -> None:
    run = tune_live(tmp_path, budget=4, seed=1, hide_peak=False)
    config = run.config
    assert config.trials_total >= 3, f"only {config.trials_total} trials in {run.sent} requests"
    for f, peak in run.peaks.items():
        assert peak > 100.0  # torch is loaded: the platform read a real peak
        assert config.floor_mb(f) >= peak  # learned from the platform's own figure, + margin
        assert all(s.config[f].memory_mb >= peak for s in config.samples)
    assert not run.failed, run.failed[:3]
    assert not any("OOM" in e or "oom" in e for e in run.exits.values()), run.exits


@pytest.mark.slow
def test_a_live_trial_under_a_torch_stages_memory_is_rolled_back_in_its_tick(
    tmp_path: Path,
) -> None:
    # seed 1's fourth proposal gives object-detection 128 MB; torch uses ~300
    run = tune_live(tmp_path, budget=6, seed=1, hide_peak=True)
    config = run.config
    assert config.trials_total >= 6, f"only {config.trials_total} trials in {run.sent} requests"
    harmed = [
        s
        for s in config.samples
        if s.measurement.failed
        and ("refused" in s.measurement.detail or "OOM" in s.measurement.detail)
    ]
    assert harmed, [s.measurement.detail for s in config.samples]
    # rolled back in the tick that showed it: the failed trial saw one tick of traffic, at
    # most a handful of requests lost (none where the kernel refused the limit outright)
    assert config.rollbacks == len(harmed)
    assert len(run.failed) <= 4 * len(harmed), run.failed[:3]
    for s in harmed:
        f = next(f for f in TORCH_STAGES if f in s.measurement.detail)
        assert config.floor_mb(f) > s.config[f].memory_mb
        later = config.samples[config.samples.index(s) + 1 :]
        assert all(
            t.config[f].memory_mb > s.config[f].memory_mb for t in later if t.source != "excluded"
        )
    # the search went on after the rollback and still measured trials that met the QoS
    assert sum(not s.measurement.failed for s in config.samples) >= 3


@pytest.mark.slow
def test_a_live_canary_trial_under_a_torch_stages_memory_costs_no_request(
    tmp_path: Path,
) -> None:
    # the same search on canaries: seed 1's fourth proposal gives object-detection's canary
    # 128 MB; the canary is re-limited live from the last trial's, so the kernel refuses it
    # (cgroup v1) or kills it (v2); either way only calls the canary took can fail
    run = tune_live(
        tmp_path,
        budget=6,
        seed=1,
        hide_peak=True,
        trials="canary",
        canary_share=0.25,
        min_canary_calls=2,
    )
    config = run.config
    assert config.trials_total >= 6, f"only {config.trials_total} trials in {run.sent} requests"
    harmed = [
        s
        for s in config.samples
        if s.measurement.failed and "object-detection's canary" in s.measurement.detail
    ]
    assert harmed, [s.measurement.detail for s in config.samples]
    assert len(run.failed) <= 2 * len(harmed), run.failed[:3]  # measured: none
    for s in harmed:
        assert config.floor_mb("object-detection") > s.config["object-detection"].memory_mb
    assert sum(not s.measurement.failed for s in config.samples) >= 3
