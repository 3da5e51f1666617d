"""Evaluators: tail summary, the simulator run, and a short live search on the local backend."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from scheduler.configure import SearchSpace, make_configurator, qos_constraint, run_search
from scheduler.configure.evaluate import LiveEvaluator, SimEvaluator, summarise_latencies
from testbed.core.platform import FunctionSpec
from testbed.core.prices import decoupled_usd_per_s


def test_tail_counts_failures_at_the_timeout() -> None:
    lat = [0.1] * 95 + [0.2] * 5
    tail, noise, err = summarise_latencies(lat, [True] * 100, percentile=95, timeout_s=5.0)
    assert tail == pytest.approx(0.1, abs=0.01) and err == 0 and noise >= 0
    ok = [True] * 90 + [False] * 10
    tail, _, err = summarise_latencies(lat, ok, percentile=95, timeout_s=5.0)
    assert tail == pytest.approx(5.0) and err == pytest.approx(0.1)
    with pytest.raises(ValueError):
        summarise_latencies([], [], percentile=95, timeout_s=1.0)


def test_sim_evaluator_measures_cost_and_oom() -> None:
    from testbed.backends import connect
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows

    catalog = load_workflows()
    workflow = catalog.get("ml-pipeline")
    stack = load_stack(Path(__file__).resolve().parents[2] / "stack.yml")
    sim = connect("sim", seed=0, workflows=catalog)
    for f in workflow.functions:
        sim.deploy(stack[f])
    space = SearchSpace.for_functions(workflow.functions, machine_cores=2)
    ev = SimEvaluator(sim, workflow, rate_rps=5, requests=100)
    big = ev.evaluate(space.all_max())
    assert not big.failed and big.detail.startswith("sim") and big.requests == 100
    smaller = space.from_indices([5, 10] * len(workflow.functions))  # 0.6 cores, 768 MB
    small = ev.evaluate(smaller)
    assert small.cost_usd < big.cost_usd / 3
    # the cost is the known price times each function's replica-seconds per invocation
    for m, config in ((big, space.all_max()), (small, smaller)):
        assert set(m.stage_replica_s) == set(workflow.functions)
        priced = sum(
            decoupled_usd_per_s(c.cpu_cores, c.memory_mb) * m.stage_replica_s[f]
            for f, c in config.items()
        )
        assert priced == pytest.approx(m.cost_usd, rel=1e-9)
    oom = ev.evaluate(space.all_min())  # 128 MB is below what torch needs
    assert oom.failed and oom.error_rate > 0.5


BURN = """
    import hashlib

    def handle(event, context):
        digest = b"x"
        for _ in range(3000):
            digest = hashlib.sha256(digest).digest()
        return {"statusCode": 200, "body": {"digest": digest.hex()}}
"""


@pytest.mark.slow
def test_live_search_meets_qos_cheaper_than_all_max(tmp_path: Path) -> None:
    """A tiny budget on the real local backend: gateway + replica processes + HTTP."""
    from testbed.backends import connect
    from testbed.core.workflows import load_workflows

    handler = tmp_path / "burn"
    handler.mkdir()
    (handler / "handler.py").write_text(textwrap.dedent(BURN))
    wf_dir = tmp_path / "workflows"
    wf_dir.mkdir()
    (wf_dir / "burn-flow.yaml").write_text(
        "name: burn-flow\nqos: {percentile: 95, target_s: 1.0}\nstages:\n  - name: burn\n"
    )
    workflow = load_workflows(wf_dir).get("burn-flow")
    with connect("local", state_dir=tmp_path / "home", workflows_dir=wf_dir) as platform:
        platform.deploy(FunctionSpec(name="burn", handler=str(handler)))
        space = SearchSpace.for_functions(["burn"], machine_cores=2)
        constraints = [qos_constraint(workflow.qos.target_s)]
        evaluator = LiveEvaluator(
            platform, workflow, rate_rps=10, requests=20, warmup_requests=2, name="local"
        )
        result = run_search(
            make_configurator("aquatope", space, constraints, seed=0),
            evaluator.evaluate,
            space=space,
            constraints=constraints,
            budget=3,  # the all-max probe and two profiling rungs
        )
    assert result.evaluations == 3
    first = result.trials[0]
    assert first.source == "probe" and first.config == space.all_max()
    assert result.best is not None
    assert result.best.latency_s <= workflow.qos.target_s
    assert result.best.cost_usd < first.cost_usd
    assert all(np.isfinite(t.cost_usd) and t.measurement.requests == 20 for t in result.trials)
