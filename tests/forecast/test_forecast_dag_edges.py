"""DagPropagator's edges: the graph it builds, the lag of its learned gains, missing inputs,
and its state round trip. Every expectation is worked out by hand from the module's
definitions (prediction ``(1 - f) x[t - s] + f x[t - s - 1]``, gain
``(observed + prior) / (predicted + prior)``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scheduler.forecast.dag import _LAG_STEPS, DagPropagator
from testbed.core.platform import QoS, Stage, Workflow

QOS = QoS(target_s=2.0)


def _wf(name: str, *stages: Stage) -> Workflow:
    return Workflow(name=name, qos=QOS, stages=stages)


def _pair() -> dict[str, Workflow]:
    return {"chain": _wf("chain", Stage("a", "up"), Stage("b", "down", after=("a",)))}


def _predicted_after_each_step(ups: list[float], latency: float | None) -> list[float]:
    """The learned structural prediction of "down" (decay 1: a running sum) per step."""
    dag = DagPropagator(_pair(), decay=1.0, prior_calls=1.0)
    out = []
    for u in ups:
        lat = None if latency is None else {"up": latency}
        dag.observe_step({"up": u, "down": 0.0}, latency_steps=lat)
        out.append(dag.state_dict()["predicted"]["down"])
    return out


def test_decay_must_be_in_the_half_open_unit_interval() -> None:
    for bad in (0.0, -0.5, 1.5, 2.0):
        with pytest.raises(ValueError, match="decay must be in"):
            DagPropagator(_pair(), decay=bad)
    assert DagPropagator(_pair(), decay=1.0).decay == 1.0


def test_entries_and_unknown_functions_have_gain_one() -> None:
    dag = DagPropagator(_pair())
    dag.observe_step({"up": 7.0, "down": 3.0})
    assert dag.gain("up") == 1.0
    assert dag.gain("nobody") == 1.0


def test_the_default_prior_weighs_five_calls() -> None:
    dag = DagPropagator(_pair())  # decay 0.98, prior 5 calls
    # "down" sees 5 calls that nothing upstream explains: (5 + 5) / (0 + 5)
    dag.observe_step({"up": 0.0, "down": 5.0})
    assert dag.gain("down") == pytest.approx(2.0)
    # next step, decayed: observed 0.98 * 5 = 4.9, predicted 0
    dag.observe_step({"up": 0.0, "down": 0.0})
    assert dag.gain("down") == pytest.approx((4.9 + 5.0) / 5.0)


def test_an_impulse_is_predicted_at_its_whole_and_fractional_lag() -> None:
    impulse = [10.0, 0.0, 0.0, 0.0, 0.0]
    # no latency given: the same step
    assert _predicted_after_each_step(impulse, None) == [10.0] * 5
    # 1.5 steps: half of it one step later, the other half two steps later
    assert _predicted_after_each_step(impulse, 1.5) == [0.0, 5.0, 10.0, 10.0, 10.0]
    # 2.25 steps: 3/4 two steps later, 1/4 three steps later
    assert _predicted_after_each_step(impulse, 2.25) == [0.0, 0.0, 7.5, 10.0, 10.0]


def test_a_latency_beyond_the_kept_counts_is_capped_at_six_steps() -> None:
    # the count before the lagged one must still be kept, so the lag is at most 8 - 2 steps
    assert _LAG_STEPS == 8
    impulse = [10.0] + [0.0] * 9
    capped = [0.0] * 6 + [10.0] * 4  # counted once, six steps later
    assert _predicted_after_each_step(impulse, 100.0) == capped
    assert _predicted_after_each_step(impulse, 6.0) == capped
    assert _predicted_after_each_step(impulse, -3.0) == [10.0] * 10  # negative: no lag


def test_missing_counts_are_zero_when_learning() -> None:
    dag = DagPropagator(_pair(), decay=1.0, prior_calls=1.0)
    dag.observe_step({"down": 3.0})  # nothing from upstream this step
    dag.observe_step({"up": 4.0})  # nothing reached "down"
    state = dag.state_dict()
    assert state["observed"] == {"down": 3.0}
    assert state["predicted"] == {"down": 4.0}
    assert state["recent"]["up"][-2:] == [0.0, 4.0]
    assert dag.gain("down") == pytest.approx((3.0 + 1.0) / (4.0 + 1.0))


def test_only_the_last_counts_are_kept() -> None:
    dag = DagPropagator(_pair())
    for t in range(3 * _LAG_STEPS):
        dag.observe_step({"up": float(t), "down": 0.0})
    recent = dag.state_dict()["recent"]["up"]
    assert recent == [float(t) for t in range(2 * _LAG_STEPS, 3 * _LAG_STEPS)]


def test_missing_demand_counts_as_zero_and_every_dag_function_is_returned() -> None:
    dag = DagPropagator(_pair())
    assert dag.propagate({}) == {"up": 0.0, "down": 0.0}
    assert dag.propagate({"other": 3.0}) == {"other": 3.0, "up": 0.0, "down": 0.0}


def test_a_scalar_demand_is_not_shifted() -> None:
    dag = DagPropagator(_pair())
    out = dag.propagate({"up": 10.0}, shift_steps={"up": 1.5})
    assert out["down"] == 10.0 and isinstance(out["down"], float)


def test_no_shift_given_for_a_function_means_no_delay() -> None:
    dag = DagPropagator(_pair())
    path = np.array([0.0, 10.0, 20.0])
    out = dag.propagate({"up": path}, shift_steps={"down": 2.0})  # only the leaf's latency
    np.testing.assert_allclose(out["down"], [0.0, 10.0, 20.0])
    # a whole-step shift holds the first value; a longer one than the path holds it throughout
    out = dag.propagate({"up": path}, shift_steps={"up": 2.0})
    np.testing.assert_allclose(out["down"], [0.0, 0.0, 0.0])
    out = dag.propagate({"up": np.array([4.0, 8.0])}, shift_steps={"up": 5.5})
    np.testing.assert_allclose(out["down"], [4.0, 4.0])


def test_a_function_also_called_alone_is_still_walked_after_its_upstream() -> None:
    # "tail" is the third stage of "pipe" and the only stage of "solo": its place in the
    # walk is its deepest stage, so a burst at the entry still reaches it
    wfs = {
        "pipe": _wf(
            "pipe",
            Stage("a", "entry"),
            Stage("b", "mid", after=("a",)),
            Stage("c", "tail", after=("b",)),
        ),
        "solo": _wf("solo", Stage("only", "tail")),
    }
    dag = DagPropagator(wfs)
    assert dag.order == ["entry", "mid", "tail"]
    assert dag.propagate({"entry": 12.0}) == {"entry": 12.0, "mid": 12.0, "tail": 12.0}


def test_a_shared_edge_keeps_its_largest_weight() -> None:
    # u -> d is a whole call in "one" and one of two joined inputs in "two"
    wfs = {
        "one": _wf("one", Stage("u", "u"), Stage("d", "d", after=("u",))),
        "two": _wf("two", Stage("u", "u"), Stage("v", "v"), Stage("d", "d", after=("u", "v"))),
    }
    assert DagPropagator(wfs).upstream("d") == {"u": 1.0, "v": 0.5}
    assert DagPropagator(dict(reversed(list(wfs.items())))).upstream("d") == {"u": 1.0, "v": 0.5}


def test_a_stage_joining_its_own_function_keeps_its_other_inputs() -> None:
    # "f" runs twice: its second stage joins its first with a stage of "g"
    wf = _wf("loop", Stage("f1", "f"), Stage("g1", "g"), Stage("f2", "f", after=("f1", "g1")))
    dag = DagPropagator({"loop": wf})
    assert dag.upstream("f") == {"g": 0.5}  # no edge from f into itself
    assert dag.upstream("g") == {}


def test_a_propagator_rebuilt_from_its_json_state_learns_as_the_one_that_never_stopped() -> None:
    wf = _wf(
        "join",
        Stage("a", "entry"),
        Stage("l", "left", after=("a",)),
        Stage("r", "right", after=("a",)),
        Stage("j", "join", after=("l", "r")),
    )
    rng = np.random.default_rng(7)
    lat = {"entry": 0.4, "left": 1.5, "right": 2.25}
    kept = DagPropagator({"join": wf})
    state = kept.state_dict()
    for _ in range(3 * _LAG_STEPS):
        counts = {f: float(rng.poisson(6)) for f in ("entry", "left", "right", "join")}
        kept.observe_step(counts, latency_steps=lat)
        rebuilt = DagPropagator({"join": wf})
        rebuilt.load_state_dict(json.loads(json.dumps(state)))
        rebuilt.observe_step(counts, latency_steps=lat)
        state = rebuilt.state_dict()
        assert state == kept.state_dict()
        for f in ("left", "right", "join"):
            assert rebuilt.gain(f) == kept.gain(f)
    assert all(len(h) == _LAG_STEPS for h in state["recent"].values())
    assert state["observed"]["join"] > 0 and state["predicted"]["join"] > 0  # it learned


def test_loading_ignores_functions_it_does_not_know() -> None:
    dag = DagPropagator(_pair(), prior_calls=1.0)
    dag.load_state_dict({"observed": {"down": 9.0, "ghost": 4.0}, "predicted": {"down": 4.0}})
    assert dag.state_dict()["observed"] == {"down": 9.0}
    assert dag.gain("down") == pytest.approx(10.0 / 5.0)
    dag.load_state_dict({})  # nothing to restore: unchanged
    assert dag.gain("down") == pytest.approx(2.0)


def test_shared_functions_at_other_depths_are_still_walked_after_their_upstreams() -> None:
    """m is the second stage of one workflow and the first of another: a burst at z must
    reach a through m (it did not when functions were walked by their deepest stage)."""
    w1 = Workflow("w1", QoS(1.0), (Stage("s1", "z"), Stage("s2", "m", after=("s1",))))
    w2 = Workflow("w2", QoS(1.0), (Stage("t1", "m"), Stage("t2", "a", after=("t1",))))
    dag = DagPropagator({"w1": w1, "w2": w2})
    assert dag.order == ["z", "m", "a"]
    assert dag.propagate({"z": 10.0}) == {"z": 10.0, "m": 10.0, "a": 10.0}
    # a cycle across workflows (a before z in a third one) is broken, every function walked
    w3 = Workflow("w3", QoS(1.0), (Stage("u1", "a"), Stage("u2", "z", after=("u1",))))
    assert sorted(DagPropagator({"w1": w1, "w2": w2, "w3": w3}).order) == ["a", "m", "z"]
