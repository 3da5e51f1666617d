"""actuate() against the real local backend: diff, clamp, call only on change, errors recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.actuate import actuate
from scheduler.policy import Decision, FunctionDecision
from testbed.backends import connect
from testbed.core.config import Limits
from testbed.core.platform import Platform
from tests.scheduler.live_helpers import deploy_noop, wait_for, write_noop


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Path]]:
    root = tmp_path_factory.mktemp("actuate")
    with connect("local", state_dir=root / "state") as platform:
        yield platform, write_noop(root)


def _statuses(platform: Platform) -> dict:
    return {s.name: s for s in platform.list()}


def test_scale_clamped_and_only_on_change(live: tuple[Platform, Path]) -> None:
    platform, handler = live
    deploy_noop(platform, "act-a", handler, **{"com.openfaas.scale.max": "2"})
    decision = Decision({"act-a": FunctionDecision(replicas=5)})
    actions = actuate(platform, decision, _statuses(platform))
    assert [(a.kind, a.before, a.after, a.ok, a.detail) for a in actions] == [
        ("scale", 0, 2, True, "clamped")
    ]
    wait_for(lambda: platform.status("act-a").replicas_ready == 2, what="2 ready replicas")
    assert actuate(platform, decision, _statuses(platform)) == []  # nothing to change
    # None means "leave as is"; an invalid decision changes nothing
    assert actuate(platform, Decision({"act-a": FunctionDecision()}), _statuses(platform)) == []
    declined = Decision({"act-a": FunctionDecision(replicas=0)}, valid=False, reason="no data")
    assert actuate(platform, declined, _statuses(platform)) == []
    assert platform.status("act-a").target_replicas == 2
    down = actuate(platform, Decision({"act-a": FunctionDecision(replicas=0)}), _statuses(platform))
    assert [(a.before, a.after) for a in down] == [(2, 0)]
    wait_for(lambda: platform.status("act-a").replicas_ready == 0, what="scaled to zero")


def test_limits_set_only_when_different(live: tuple[Platform, Path]) -> None:
    platform, handler = live
    deploy_noop(platform, "act-b", handler)
    want = Limits(cpu_cores=0.5, memory_mb=256)
    decision = Decision({"act-b": FunctionDecision(limits=want)})
    actions = actuate(platform, decision, _statuses(platform))
    assert [(a.kind, a.ok) for a in actions] == [("set_limits", True)]
    assert platform.status("act-b").limits == want
    assert actuate(platform, decision, _statuses(platform)) == []


def test_platform_error_is_recorded_not_raised(live: tuple[Platform, Path]) -> None:
    platform, handler = live
    deploy_noop(platform, "act-c", handler)
    stale = _statuses(platform)
    platform.remove("act-c")  # the function disappears between observe and actuate
    actions = actuate(platform, Decision({"act-c": FunctionDecision(replicas=1)}), stale)
    assert len(actions) == 1 and not actions[0].ok and "act-c" in actions[0].error
    unknown = actuate(platform, Decision({"nope": FunctionDecision(replicas=1)}), stale)
    assert [(a.kind, a.ok) for a in unknown] == [("skip", False)]


def test_missing_replica_is_reasserted(live: tuple[Platform, Path]) -> None:
    import dataclasses

    platform, handler = live
    deploy_noop(platform, "act-d", handler)
    platform.scale("act-d", replicas=1)
    wait_for(lambda: platform.status("act-d").replicas_ready == 1, what="one ready")
    decision = Decision({"act-d": FunctionDecision(replicas=1)})
    assert actuate(platform, decision, _statuses(platform)) == []
    # the replica died between two ticks: target still 1, nothing alive
    lost = dataclasses.replace(platform.status("act-d"), replicas_ready=0, replicas_starting=0)
    actions = actuate(platform, decision, {"act-d": lost})
    assert [(a.kind, a.after, a.ok, a.detail) for a in actions] == [
        ("scale", 1, True, "re-assert (0 alive)")
    ]


def test_canary_run_relimited_and_ended_only_on_change(live: tuple[Platform, Path]) -> None:
    platform, handler = live
    deploy_noop(platform, "act-c", handler)
    trial = Limits(cpu_cores=0.5, memory_mb=192)
    run = Decision({"act-c": FunctionDecision(canary=trial, canary_share=0.2)})
    actions = actuate(platform, run, _statuses(platform))
    assert [(a.kind, a.before, a.after, a.ok) for a in actions] == [
        ("set_canary", None, {"cpu_cores": 0.5, "memory_mb": 192, "share": 0.2}, True)
    ]
    assert platform.status("act-c-canary").limits == trial
    assert actuate(platform, run, _statuses(platform)) == []  # nothing to change
    wider = Decision({"act-c": FunctionDecision(canary=trial, canary_share=0.5)})
    assert [a.kind for a in actuate(platform, wider, _statuses(platform))] == ["set_canary"]
    end = Decision({"act-c": FunctionDecision(end_canary=True)})
    assert [(a.kind, a.ok) for a in actuate(platform, end, _statuses(platform))] == [
        ("end_canary", True)
    ]
    assert "act-c-canary" not in _statuses(platform)
    assert actuate(platform, end, _statuses(platform)) == []


def test_a_canary_the_platform_cannot_name_is_recorded_not_raised(
    live: tuple[Platform, Path],
) -> None:
    platform, handler = live
    long_name = "act-" + "x" * 55  # 59 chars: its canary's name would be 66
    deploy_noop(platform, long_name, handler)
    run = Decision({long_name: FunctionDecision(canary=Limits(memory_mb=192))})
    (action,) = actuate(platform, run, _statuses(platform))
    assert action.kind == "set_canary" and not action.ok and "1-63 chars" in action.error
