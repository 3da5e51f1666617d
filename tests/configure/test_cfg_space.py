"""The lattice and the one [0, 1] transform."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.configure.space import Configuration, FunctionConfig, FunctionSpace, SearchSpace
from scheduler.configure.transform import UnitTransform
from testbed.core.errors import ConfigError


def test_paper_lattice_capped_and_floored() -> None:
    space = SearchSpace.for_functions(["a", "b"], machine_cores=2, memory_need_mb={"b": 500})
    a, b = space.functions
    assert a.cpu_values[0] == pytest.approx(0.1) and a.cpu_values[-1] == pytest.approx(2.0)
    assert np.allclose(np.diff(a.cpu_values), 0.1)
    assert a.memory_values[0] == 128 and a.memory_values[-1] == 10240
    assert set(np.diff(a.memory_values)) == {64}
    assert b.memory_values[0] == 512  # 500 MB need rounds up to the 128 + 64k lattice
    assert space.n_dims == 4
    assert space.dimension_names[:2] == ["cpu_cores[a]", "memory_mb[a]"]
    assert SearchSpace.for_functions(["a"]).functions[0].cpu_values[-1] == pytest.approx(6.0)


def test_bad_spaces_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="memory_min_mb"):
        FunctionSpace("x", memory_min_mb=20000)
    with pytest.raises(ConfigError, match="duplicate"):
        SearchSpace([FunctionSpace("x"), FunctionSpace("x")])
    space = SearchSpace.for_functions(["a"])
    with pytest.raises(ConfigError, match="not on the search lattice"):
        space.validate(Configuration.of({"a": FunctionConfig(0.15, 128)}))


@pytest.mark.parametrize("warp", ["log", "linear"])
def test_transform_round_trips_on_the_lattice(warp: str) -> None:
    space = SearchSpace.for_functions(["a", "b", "c"], machine_cores=4)
    tf = UnitTransform(space, warp=warp)  # type: ignore[arg-type]
    configs = [space.all_max(), space.all_min(), *space.sample(20, np.random.default_rng(1))]
    x = tf.to_unit(configs)
    assert x.shape == (22, 6) and x.min() >= 0 and x.max() <= 1
    assert np.allclose(x[0], 1) and np.allclose(x[1], 0)
    assert tf.from_unit(x) == configs
    # lattice coordinates are exactly the choices the optimisers search over
    for d, choices in enumerate(tf.choices()):
        assert len(choices) == len(space.values(d))
        assert np.isin(x[:, d], choices).all()


def test_log_warp_spreads_small_cpu_values() -> None:
    space = SearchSpace.for_functions(["a"])
    log_c = UnitTransform(space, warp="log").choices()[0]
    lin_c = UnitTransform(space, warp="linear").choices()[0]
    # 0.1 -> 0.2 cores halves a CPU-bound latency: the log warp gives it room
    assert log_c[1] - log_c[0] > 5 * (lin_c[1] - lin_c[0])


def test_configuration_json_round_trip() -> None:
    space = SearchSpace.for_functions(["a", "b"])
    config = space.sample(1, np.random.default_rng(0))[0]
    assert Configuration.from_json(config.to_json()) == config
    assert config.limits()["a"].cpu_cores == config["a"].cpu_cores
