"""ExpertMixture against hand-computed weights: Bayes' rule on discounted log loss, fixed
share, overlapping windows counted once, and a state that survives a restart exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scheduler.forecast.mixture import ExpertMixture, group_prior, refresh_weights, resolve_many


def _by_hand(prior: list[float], losses: list[float], share: float) -> np.ndarray:
    """``(1 - share) x posterior + share x prior`` with ``posterior ∝ prior x exp(-loss)``."""
    p = np.asarray(prior) / sum(prior)
    post = p * np.exp(-np.asarray(losses))
    return (1 - share) * post / post.sum() + share * p


def test_weights_follow_bayes_rule_on_the_discounted_log_loss() -> None:
    mix = ExpertMixture(("a", "b", "c"), prior=[2.0, 1.0, 1.0], half_life=2.0, share=0.1)
    assert mix.weights() == pytest.approx(_by_hand([2, 1, 1], [0, 0, 0], 0.1))
    probs = np.array([0.8, 0.5, 0.2])
    outcomes = [True, False, True]
    decay = 0.5 ** (1 / 2.0)
    loss = np.zeros(3)
    for t, hit in enumerate(outcomes):
        mix.record(float(t), float(t) + 1.0, probs, tick_s=1.0)  # back to back: eta = 1
        assert mix.resolve(float(t) + 1.0, lambda a, b, hit=hit: hit) == 1
        loss = decay * loss - np.log(probs if hit else 1 - probs)
        assert mix.weights() == pytest.approx(_by_hand([2, 1, 1], list(loss), 0.1))
    assert mix.scored == 3
    w = mix.weights()
    assert mix.predict(probs) == pytest.approx(float(w @ probs))


def test_overlapping_windows_are_charged_a_tick_over_window_share_each() -> None:
    # windows of 4 s recorded every 1 s overlap four deep: each is charged 1/4 of its loss
    mix = ExpertMixture(("sure", "unsure"), share=0.0, half_life=1e12)
    mix.record(0.0, 4.0, np.array([0.9, 0.5]), tick_s=1.0)
    assert mix.resolve(3.9, lambda a, b: True) == 0  # not over yet
    assert mix.scored == 0
    assert mix.resolve(4.0, lambda a, b: True) == 1
    eta = 0.25
    expected = _by_hand([1, 1], [-eta * math.log(0.9), -eta * math.log(0.5)], 0.0)
    assert mix.weights() == pytest.approx(expected)
    # a window shorter than the tick is charged in full, never more
    mix2 = ExpertMixture(("x", "y"), share=0.0, half_life=1e12)
    mix2.record(0.0, 0.5, np.array([0.9, 0.5]), tick_s=1.0)
    mix2.resolve(0.5, lambda a, b: False)
    assert mix2.weights() == pytest.approx(_by_hand([1, 1], [-math.log(0.1), -math.log(0.5)], 0))


def test_resolve_asks_about_each_window_it_scores_oldest_first() -> None:
    mix = ExpertMixture(("a", "b"))
    for t in range(3):
        mix.record(float(t), float(t) + 2.0, np.array([0.5, 0.5]), tick_s=1.0)
    asked: list[tuple[float, float]] = []

    def happened(a: float, b: float) -> bool:
        asked.append((a, b))
        return False

    assert mix.resolve(3.0, happened) == 2
    assert asked == [(0.0, 2.0), (1.0, 3.0)]
    assert mix.resolve(10.0, happened) == 1 and asked[-1] == (2.0, 4.0)
    assert mix.resolve(20.0, happened) == 0 and mix.scored == 3


def test_a_certain_miss_costs_a_bounded_loss_and_the_share_keeps_a_floor() -> None:
    mix = ExpertMixture(("never", "sometimes"), share=0.02, half_life=1e12)
    for t in range(50):
        mix.record(float(t), float(t) + 1.0, np.array([0.0, 0.3]), tick_s=1.0)
        mix.resolve(float(t) + 1.0, lambda a, b: False)
    # "never" is right 50 times: nearly all the weight, but never all of it
    w = mix.weights()
    assert w[1] == pytest.approx(0.02 * 0.5, rel=0.01) and w.sum() == pytest.approx(1.0)
    assert mix.predict(np.array([0.0, 1.0])) == pytest.approx(w[1])
    # an event "never" ruled out costs it -log(1e-4), not infinity: one is not enough to
    # outweigh 50 right calls, three are
    moved = []
    for t in range(50, 53):
        mix.record(float(t), float(t) + 1.0, np.array([0.0, 0.3]), tick_s=1.0)
        mix.resolve(float(t) + 1.0, lambda a, b: True)
        assert np.all(np.isfinite(mix.weights()))
        moved.append(mix.weights()[1] > 0.5)
    assert moved == [False, False, True]
    # predictions stay probabilities whatever the experts say
    assert mix.predict(np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert 0.0 <= mix.predict(np.array([0.0, 0.0])) <= 1.0


def test_state_round_trips_through_json_with_open_windows() -> None:
    rng = np.random.default_rng(3)
    a = ExpertMixture(("f", "g", "h"), prior=[1, 2, 3], half_life=50.0, share=0.05)
    for t in range(40):
        a.record(float(t), float(t) + 3.0, rng.random(3), tick_s=1.0)
        a.resolve(float(t), lambda s, e: (int(s) % 4) == 0)
    b = ExpertMixture(("f", "g", "h"), prior=[1, 2, 3], half_life=50.0, share=0.05)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.scored == a.scored and b.weights() == pytest.approx(a.weights(), abs=0)
    # the windows still open at the save are scored after the load, exactly as before it
    for t in range(40, 60):
        probs = rng.random(3)
        for m in (a, b):
            m.record(float(t), float(t) + 3.0, probs, tick_s=1.0)
            m.resolve(float(t), lambda s, e: (int(s) % 3) == 0)
        assert b.weights() == pytest.approx(a.weights(), abs=0)
        assert b.predict(probs) == a.predict(probs)
    assert b.scored == a.scored


def test_a_state_without_open_windows_or_a_count_loads_as_none_and_zero() -> None:
    mix = ExpertMixture(("x", "y"))
    mix.load_state_dict({"names": ["x", "y"], "loss": [0.0, 2.0]})
    assert mix.scored == 0 and mix.resolve(1e9, lambda s, e: True) == 0
    assert mix.weights()[0] > mix.weights()[1]
    mix.load_state_dict({})  # not this mixture's: ignored
    assert mix.weights()[0] > mix.weights()[1]


def test_evidence_is_halved_every_3600_windows_by_default() -> None:
    mix = ExpertMixture(("a", "b"), share=0.0)
    mix.record(0.0, 1.0, np.array([0.9, 0.1]), tick_s=1.0)
    mix.resolve(1.0, lambda s, e: True)
    gap = math.log(0.9) - math.log(0.1)  # L_b - L_a after the first window
    for t in range(1, 3601):  # equal forecasts: the gap only decays
        mix.record(float(t), float(t) + 1.0, np.array([0.5, 0.5]), tick_s=1.0)
        mix.resolve(float(t) + 1.0, lambda s, e: False)
    w = mix.weights()
    assert math.log(w[0] / w[1]) == pytest.approx(gap / 2, rel=1e-9)


def test_a_state_of_other_experts_is_ignored_and_a_broken_one_refused() -> None:
    a = ExpertMixture(("x", "y"))
    a.record(0.0, 1.0, np.array([0.9, 0.1]), tick_s=1.0)
    a.resolve(1.0, lambda s, e: True)
    state = a.state_dict()
    other = ExpertMixture(("x", "z"))
    other.load_state_dict(state)
    assert other.scored == 0 and other.weights() == pytest.approx([0.5, 0.5])
    fresh = ExpertMixture(("x", "y"))
    with pytest.raises(ValueError, match="loss"):
        fresh.load_state_dict({**state, "loss": [1.0]})
    with pytest.raises(ValueError, match="loss"):
        fresh.load_state_dict({**state, "loss": [float("nan"), 0.0]})
    with pytest.raises(ValueError, match="pending"):
        fresh.load_state_dict({**state, "pending": [[0.0, 1.0, 1.0, [0.5]]]})
    assert fresh.scored == 0  # a refused state changes nothing


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"names": ()}, "at least one"),
        ({"names": ("a", "b"), "prior": [1.0]}, "prior"),
        ({"names": ("a", "b"), "prior": [1.0, 0.0]}, "prior"),
        ({"names": ("a", "b"), "prior": [1.0, float("inf")]}, "prior"),
        ({"names": ("a",), "half_life": 0.0}, "half_life"),
        ({"names": ("a",), "share": 1.0}, "share"),
        ({"names": ("a",), "share": -0.1}, "share"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ExpertMixture(**kwargs)  # type: ignore[arg-type]


def test_record_refuses_the_wrong_number_of_probabilities() -> None:
    mix = ExpertMixture(("a", "b"))
    with pytest.raises(ValueError, match="expected 2"):
        mix.record(0.0, 1.0, np.array([0.5]), tick_s=1.0)


def test_group_prior_splits_evenly_between_groups_then_within() -> None:
    assert group_prior({"forecast": 1, "gaps": 1, "periodic": 4}) == pytest.approx(
        [1 / 3, 1 / 3] + [1 / 12] * 4
    )
    assert group_prior({}) == [1.0]


def test_weights_stay_finite_when_every_expert_has_lost_for_long() -> None:
    # ~1,800 nats of loss each: exp(-loss) underflows unless the best expert is taken as 0
    mix = ExpertMixture(("a", "b"), prior=[1.0, 3.0], half_life=1e12, share=0.0)
    for t in range(200):
        mix.record(float(t), float(t) + 1.0, np.array([1.0, 0.999]), tick_s=1.0)
        mix.resolve(float(t) + 1.0, lambda a, b: False)
    w = mix.weights()
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)
    assert w[1] > 0.999  # clipped at 1 - 1e-4, "a" lost more each window


def test_a_half_life_shorter_than_one_window_forgets_almost_at_once() -> None:
    mix = ExpertMixture(("a", "b"), half_life=0.5, share=0.0)
    for t, hit in enumerate([True] * 20 + [False]):
        mix.record(float(t), float(t) + 1.0, np.array([0.9, 0.1]), tick_s=1.0)
        mix.resolve(float(t) + 1.0, lambda a, b, hit=hit: hit)
    # 20 hits for "a" are worth a quarter of their loss one window later: one miss decides
    assert mix.weights()[1] > 0.5


def test_many_mixtures_scored_and_weighted_together_match_one_by_one() -> None:
    rng = np.random.default_rng(5)
    names = ("a", "b", "c", "d")
    prior = group_prior({"a": 1, "rest": 3})
    alone = [ExpertMixture(names, prior=prior) for _ in range(5)]
    together = [ExpertMixture(names, prior=prior) for _ in range(5)]
    other = ExpertMixture(("x", "y"))  # other experts: weighted on their own
    events = rng.random((5, 400)) < 0.3
    for t in range(400):
        for i in range(5):
            probs = rng.uniform(0.0, 1.0, 4)
            width = float(rng.integers(1, 4))  # windows of 1-3 ticks: 0-3 end at once
            for group in (alone, together):
                group[i].record(float(t), t + width, probs, tick_s=1.0)
        other.record(float(t), t + 1.0, np.array([0.2, 0.9]), tick_s=1.0)

        def happened(lo: float, hi: float, i: int = 0) -> bool:
            return bool(events[i, int(lo)])

        scored = sum(
            m.resolve(t + 1.0, lambda lo, hi, i=i: happened(lo, hi, i)) for i, m in enumerate(alone)
        )
        both = [(m, lambda lo, hi, i=i: happened(lo, hi, i)) for i, m in enumerate(together)]
        assert resolve_many([*both, (other, lambda lo, hi: True)], t + 1.0) == scored + 1
        refresh_weights([*together, other])
        for a, b in zip(alone, together, strict=True):
            assert a.weights().tolist() == b.weights().tolist()
            assert a.scored == b.scored
    assert other.weights()[1] > 0.9  # scored and weighted alone, with its own prior
    assert resolve_many([], 0.0) == 0
