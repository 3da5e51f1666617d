"""ReplayOptions: validated once, with errors that name the option and where it came from."""

from __future__ import annotations

import pytest

from loadgen.options import ReplayOptions
from testbed.core.errors import ConfigError


def test_defaults_and_replace_validate() -> None:
    options = ReplayOptions()
    assert options.timeout_s == 60.0 and options.drain_s is None and options.locust_csv
    assert options.replace(seed=3).seed == 3
    with pytest.raises(ConfigError, match=r"spin_s=1\.5"):
        options.replace(spin_s=1.5)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"timeout": 3}, r"experiment.yaml: loadgen: unknown option\(s\) timeout"),
        ({"max_in_flight": 0}, r"max_in_flight=0"),
        ({"timeout_s": -1}, r"timeout_s=-1"),
        ({"drain_s": -2.0}, r"drain_s=-2\.0"),
    ],
)
def test_bad_mappings_name_the_option(data: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReplayOptions.from_mapping(data, where="experiment.yaml: loadgen")


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ReplayOptions(10)  # type: ignore[misc]
