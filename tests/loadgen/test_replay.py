"""Open-loop replay over real HTTP on 127.0.0.1, in a child process (Locust patches gevent)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from loadgen import ReplayOptions, replay_in_child
from loadgen.plan import plan
from loadgen.trace import Trace
from testbed.core.platform import QoS, Stage, Workflow
from testbed.core.workflows import WorkflowCatalog


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _catalog() -> WorkflowCatalog:
    return WorkflowCatalog({"wf": Workflow("wf", QoS(1.5), (Stage("wf", "wf"),))}, {})


def test_replay_sends_every_request_and_records_it(noop_gateway: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    trace = Trace({"f": np.sort(rng.random(240) * 3.0)}, 3.0)
    the_plan = plan(trace, ["wf"], catalog=_catalog())
    result = replay_in_child(the_plan, noop_gateway, tmp_path, wall_timeout_s=60)
    assert result.scheduled == result.sent == result.ok == 240
    assert result.dropped == 0 and result.errors == 0
    rows = _rows(tmp_path / "requests.csv")
    assert [int(r["request_id"]) for r in rows] == list(range(240))
    intended = np.array([float(r["intended_s"]) for r in rows])
    sent = np.array([float(r["sent_s"]) for r in rows])
    end = np.array([float(r["end_s"]) for r in rows])
    assert np.allclose(intended, the_plan.schedule.intended_s, atol=1e-6)
    lateness = sent - intended
    assert (lateness >= 0).all() and np.median(lateness) < 0.25  # recorded
    assert (end >= sent).all()
    assert all(
        r["status"] == "200"
        and r["ok"] == "True"
        and r["workflow"] == "wf"
        and r["qos_target_s"] == "1.500000"
        for r in rows
    )
    stages = _rows(tmp_path / "stages.csv")
    assert len(stages) == 240 and stages[0]["stage"] == "wf"
    starts = np.array([float(s["start_s"]) for s in stages])
    assert (starts > -1).all() and (starts < 60).all()  # made relative to t0
    summary = json.loads((tmp_path / "loadgen.json").read_text())
    assert summary["sent"] == 240 and summary["t0_unix_s"] > 1.7e9
    locust_stats = _rows(tmp_path / "locust_stats.csv")
    total = next(r for r in locust_stats if r["Name"] == "Aggregated")
    assert int(total["Request Count"]) == 240  # Locust's own statistics still work
    assert not list(tmp_path.glob(".*.partial"))


def test_open_loop_does_not_wait_for_slow_responses(slow_gateway: str, tmp_path: Path) -> None:
    # 40 requests in 0.8 s against a server that takes 0.5 s each: a closed loop with one
    # user would need 20 s; open loop sends them all on time with many in flight.
    trace = Trace({"f": np.linspace(0, 0.8, 40, endpoint=False)}, 1.0)
    the_plan = plan(trace, ["function:noop"])
    result = replay_in_child(the_plan, slow_gateway, tmp_path, wall_timeout_s=60)
    assert result.ok == 40
    rows = _rows(tmp_path / "requests.csv")
    sent = np.array([float(r["sent_s"]) for r in rows])
    latency = np.array([float(r["latency_s"]) for r in rows])
    assert sent.max() < 1.0 + 0.3
    assert (latency >= 0.45).all()
    in_flight_at_last_send = int((np.array([float(r["end_s"]) for r in rows]) > sent.max()).sum())
    assert in_flight_at_last_send >= 10


def test_in_flight_cap_drops_and_records(slow_gateway: str, tmp_path: Path) -> None:
    trace = Trace({"f": np.linspace(0, 0.4, 20, endpoint=False)}, 0.5)
    the_plan = plan(trace, ["function:noop"])
    result = replay_in_child(
        the_plan, slow_gateway, tmp_path, ReplayOptions(max_in_flight=5), wall_timeout_s=60
    )
    assert result.ok == 5 and result.dropped == 15 and result.sent == 5
    rows = _rows(tmp_path / "requests.csv")
    dropped = [r for r in rows if r["error"].startswith("dropped")]
    assert len(dropped) == 15 and all(r["status"] == "0" and r["sent_s"] == "" for r in dropped)


def test_request_timeout_is_honoured(slow_gateway: str, tmp_path: Path) -> None:
    # the server takes 0.5 s; with a 0.2 s timeout every request is a recorded timeout
    trace = Trace({"f": np.linspace(0, 0.2, 4, endpoint=False)}, 0.5)
    result = replay_in_child(
        plan(trace, ["function:noop"]),
        slow_gateway,
        tmp_path,
        ReplayOptions(timeout_s=0.2),
        wall_timeout_s=60,
    )
    assert result.ok == 0
    rows = _rows(tmp_path / "requests.csv")
    assert len(rows) == 4 and all(r["status"] == "0" for r in rows)
    assert all(float(r["latency_s"]) < 0.45 for r in rows)


def test_unreachable_gateway_counts_errors(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    trace = Trace({"f": np.linspace(0, 0.2, 5, endpoint=False)}, 0.5)
    result = replay_in_child(
        plan(trace, ["function:noop"]),
        f"http://127.0.0.1:{port}",
        tmp_path,
        ReplayOptions(timeout_s=5),
        wall_timeout_s=60,
    )
    assert result.errors == 5 and result.ok == 0
    rows = _rows(tmp_path / "requests.csv")
    assert all(r["status"] == "0" and r["error"] for r in rows)


def test_replay_against_local_backend(local_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from testbed.core.stack import load_stack

    repo = Path(__file__).resolve().parents[2]
    local_platform.deploy(load_stack(repo / "stack.yml")["noop"])
    trace = Trace({"f": np.linspace(0, 2.0, 40, endpoint=False)}, 2.0)
    result = replay_in_child(
        plan(trace, ["function:noop"]), local_platform.url, tmp_path, wall_timeout_s=120
    )
    assert result.sent == 40 and result.ok == 40
    rows = _rows(tmp_path / "requests.csv")
    assert all(r["kind"] == "function" and r["workflow"] == "noop" for r in rows)
    assert rows[0]["cold_start"] == "True"  # scale.min 0: the first call starts a replica
    assert result.lateness_p50_s < 0.05


def test_social_network_mix_through_local_gateway(local_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from testbed.core.stack import load_stack
    from testbed.core.workflows import load_workflows

    repo = Path(__file__).resolve().parents[2]
    catalog = load_workflows()
    stack = load_stack(repo / "stack.yml")
    needed = {
        f for wf in catalog.mixes["social-network"].weights for f in catalog.get(wf).functions
    }
    for name in sorted(needed):
        local_platform.deploy(stack[name])
    trace = Trace({"f": np.linspace(0, 3.0, 30, endpoint=False)}, 3.0)
    the_plan = plan(trace, ["social-network"], catalog=catalog, seed=2)
    result = replay_in_child(the_plan, local_platform.url, tmp_path, wall_timeout_s=120)
    assert result.sent == 30 and result.ok == 30
    rows = _rows(tmp_path / "requests.csv")
    assert {r["workflow"] for r in rows} <= set(catalog.mixes["social-network"].weights)
    stages = _rows(tmp_path / "stages.csv")
    by_request: dict[str, set[str]] = {}
    for s in stages:
        by_request.setdefault(s["request_id"], set()).add(s["function"])
    for r in rows:  # every stage of every workflow was recorded, relative to t0
        assert by_request[r["request_id"]] == set(catalog.get(r["workflow"]).functions)
    t = np.array([float(s["start_s"]) for s in stages])
    assert (t >= 0).all() and (t < 30).all()
    assert any(r["cold_start"] == "True" and int(r["cold_stages"]) >= 1 for r in rows)
