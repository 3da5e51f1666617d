"""``PrewarmConfig``'s ranges, each at its edge: the last value accepted, the first refused,
and the message naming the option, the rule and the value given."""

from __future__ import annotations

import math
from typing import Any

import pytest

from scheduler.policies.prewarm_config import PREWARM_FORECASTERS, PrewarmConfig, config_fields

# option -> (a value at the edge that is accepted, the nearest refused, the rule's words)
EDGES: dict[str, tuple[Any, Any, str]] = {
    "step_s": (1e-9, 0.0, "> 0"),
    "miss_price_s": (1e-9, 0.0, "> 0"),
    "cold_start_s": (1e-9, 0.0, "> 0"),
    "service_s": (1e-9, 0.0, "> 0"),
    "recent_window_s": (1e-9, 0.0, "> 0"),
    "refit_every_s": (0.0, -1e-9, ">= 0"),
    "max_fit_age_s": (0.0, -1e-9, ">= 0"),
    "start_weight": (0.0, -1e-9, ">= 0"),
    "max_start_ratio": (0.0, -1e-9, ">= 0"),
    "min_history_steps": (4, 3, ">= 4"),
    "refit_every_steps": (1, 0, ">= 1"),
    "max_fits_per_tick": (1, 0, ">= 1"),
    "lstm_epochs": (1, 0, ">= 1"),
    "lstm_min_steps": (68, 67, ">= 68 (the LSTM's 48 + 12 + 8 steps)"),
    "paper_level": (1e-9, 0.0, "in (0, 1)"),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_each_option_is_accepted_at_its_edge_and_refused_past_it(name: str) -> None:
    accepted, refused, rule = EDGES[name]
    assert getattr(PrewarmConfig(**{name: accepted}), name) == accepted
    message = f"PrewarmConfig.{name} must be {rule}, got {refused!r}"
    with pytest.raises(ValueError) as info:
        PrewarmConfig(**{name: refused})
    assert str(info.value) == message


@pytest.mark.parametrize("name", ["step_s", "miss_price_s", "refit_every_s", "start_weight"])
def test_nan_is_refused_where_a_bound_is_checked(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^PrewarmConfig\.{name} must be"):
        PrewarmConfig(**{name: math.nan})


def test_paper_level_is_refused_at_one_and_accepted_just_below() -> None:
    assert PrewarmConfig(paper_level=1 - 1e-9).paper_level == 1 - 1e-9
    with pytest.raises(ValueError, match=r"^PrewarmConfig\.paper_level must be in \(0, 1\)"):
        PrewarmConfig(paper_level=1.0)


def test_history_must_hold_at_least_the_steps_a_forecast_needs() -> None:
    assert PrewarmConfig(min_history_steps=20, history_steps=20).history_steps == 20
    with pytest.raises(ValueError) as info:
        PrewarmConfig(min_history_steps=20, history_steps=19)
    assert str(info.value) == "PrewarmConfig.history_steps must be >= min_history_steps, got 19"


@pytest.mark.parametrize("forecaster", PREWARM_FORECASTERS)
def test_every_named_forecaster_is_accepted(forecaster: str) -> None:
    assert PrewarmConfig(forecaster=forecaster).forecaster == forecaster


def test_an_unknown_forecaster_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError) as info:
        PrewarmConfig(forecaster="arima")
    assert str(info.value) == (
        f"PrewarmConfig.forecaster must be one of {PREWARM_FORECASTERS}, got 'arima'"
    )


def test_the_defaults_are_valid_and_config_fields_lists_them_in_order() -> None:
    fields = config_fields()
    default = PrewarmConfig()
    assert list(fields)[:3] == ["forecaster", "step_s", "history_steps"]
    for name, (annotation, value) in fields.items():
        assert getattr(default, name) == value
        assert annotation in (
            "str",
            "float",
            "int",
            "bool",
            "float | None",
            "float | tuple[float, ...]",
        )
    assert fields["step_s"] == ("float", 10.0)
