"""The schedule is a pure function of trace, mapping and seed."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from loadgen.plan import plan
from loadgen.schedule import build_schedule, map_functions
from loadgen.trace import Trace
from testbed.core.errors import ConfigError
from testbed.core.platform import QoS, Stage, Workflow, WorkflowMix
from testbed.core.workflows import WorkflowCatalog


def _trace() -> Trace:
    rng = np.random.default_rng(0)
    return Trace(
        {
            "busy": np.sort(rng.random(3000) * 60),
            "mid": np.sort(rng.random(600) * 60),
            "rare": np.sort(rng.random(20) * 60),
        },
        60.0,
    )


def _catalog() -> WorkflowCatalog:
    def wf(name: str, target_s: float) -> Workflow:
        return Workflow(name, QoS(target_s), (Stage(name, name),))

    flows = {n: wf(n, t) for n, t in (("w1", 1.0), ("compose", 0.5), ("home", 0.2), ("user", 0.3))}
    mix = WorkflowMix("social", {"compose": 0.2, "home": 0.4, "user": 0.4})
    return WorkflowCatalog(flows, {"social": mix})


def test_round_robin_mapping_busiest_first() -> None:
    tr = _trace()
    assert map_functions(tr, ["a", "b"]) == {"busy": "a", "mid": "b"}
    assert map_functions(tr, ["a", "b"], top=3) == {"busy": "a", "mid": "b", "rare": "a"}
    assert map_functions(tr, ["a"], explicit={"rare": "a"}) == {"rare": "a"}
    with pytest.raises(ConfigError, match="unknown trace function"):
        map_functions(tr, ["a"], explicit={"nope": "a"})
    with pytest.raises(ConfigError, match="unknown target"):
        map_functions(tr, ["a"], explicit={"rare": "b"})


def test_schedule_is_sorted_complete_and_deterministic() -> None:
    tr = _trace()
    mapping = {"busy": "w1", "mid": "social"}
    mixes = {"social": {"compose": 0.2, "home": 0.4, "user": 0.4}}
    a = build_schedule(tr, mapping, mixes=mixes, seed=5)
    b = build_schedule(tr, mapping, mixes=mixes, seed=5)
    assert len(a) == 3600
    assert np.all(np.diff(a.intended_s) >= 0)
    assert np.array_equal(a.intended_s, b.intended_s) and np.array_equal(a.target, b.target)
    counts = a.counts_by_target()
    assert counts["w1"] == 3000
    assert counts["compose"] + counts["home"] + counts["user"] == 600
    assert counts["compose"] / 600 == pytest.approx(0.2, abs=0.05)
    assert counts["home"] / 600 == pytest.approx(0.4, abs=0.06)
    # the inputs are untouched and nothing outside the module was used
    assert tr.arrivals_s["busy"].size == 3000
    assert "locust" not in sys.modules and "gevent" not in sys.modules


def test_plan_compresses_cuts_and_scales() -> None:
    tr = _trace()
    p = plan(
        tr,
        ["w1", "social"],
        catalog=_catalog(),
        compress=2.0,
        duration_s=10.0,
        rate_scale=0.5,
        seed=1,
    )
    s = p.schedule
    assert s.duration_s == 10.0 and s.intended_s.max() < 10.0
    # busy: 3000 per 60 s, x2 compression, first 10 s, half the rate -> about 500
    assert abs(s.counts_by_target()["w1"] - 500) < 80
    assert p.qos_s["home"] == 0.2 and p.groups["social"]["compose"] == 0.2
    assert p.kinds["w1"] == "workflow"
    f = plan(tr, ["function:noop"], catalog=_catalog())
    assert f.schedule.targets == ("noop",) and f.kinds["noop"] == "function"
    assert math.isnan(f.qos_s["noop"])
    with pytest.raises(ConfigError, match="unknown workflow"):
        plan(tr, ["nope"], catalog=_catalog())


def test_head_cuts_schedule() -> None:
    s = build_schedule(_trace(), {"busy": "w"})
    h = s.head(30.0)
    assert h.duration_s == 30.0 and (h.intended_s < 30.0).all()
    assert len(h) == int((s.intended_s < 30.0).sum())
