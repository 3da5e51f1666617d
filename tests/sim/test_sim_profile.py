"""Profiles: the JSON format, its errors, the scaling tables, the profiler, the shipped file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from testbed.core.errors import ConfigError
from testbed.core.platform import FunctionSpec
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import (
    FunctionProfile,
    Profile,
    default_profile_path,
    load_profile,
    save_profile,
    scaling_factor,
)
from testbed.sim.profiler import ProfileSettings, fit_start_cores, profile_functions
from tests.sim.sim_helpers import make_profile

REPO = Path(__file__).resolve().parents[2]


def test_round_trip(tmp_path: Path) -> None:
    profile = make_profile(
        ["f"],
        service=Distribution.empirical([0.1, 0.2, 0.3]),
        cold=Distribution("lognormal", value_s=0.5, sigma=0.2),
        overhead=Distribution.exponential(0.001),
        memory_mb=100.0,
        cpu_scaling=((0.5, 2.0), (1.0, 1.0)),
        idle_scaling=((0.05, 1.0), (2.0, 3.1)),
    )
    full = Profile(profile.functions, profile.gateway_overhead_s, {"m": 1})
    save_profile(full, tmp_path / "profile.json")
    again = load_profile(tmp_path)  # a directory means its profile.json
    assert again.functions["f"] == profile.functions["f"]
    assert again.gateway_overhead_s == profile.gateway_overhead_s
    assert again.provenance == {"m": 1}


def test_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    raw = make_profile(["f"]).to_json()
    raw["functions"]["f"]["service_s"] = {"kind": "exponential"}
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"bad\.json: functions\.f\.service_s: .*'mean_s'"):
        load_profile(path)
    raw["functions"]["f"]["service_s"] = {"kind": "constant", "value_s": 0.1}
    raw["functions"]["f"]["cpu_scaling"] = [[0.5]]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"functions\.f\.cpu_scaling\[0\]"):
        load_profile(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="line 1"):
        load_profile(path)
    with pytest.raises(ConfigError, match="no such profile"):
        load_profile(tmp_path / "missing.json")


def test_scaling_factor_interpolates_in_log_space() -> None:
    table = ((0.25, 4.0), (1.0, 1.0))
    assert scaling_factor(table, None) == 1.0
    assert scaling_factor(table, 0.1) == 4.0
    assert scaling_factor(table, 2.0) == 1.0
    assert scaling_factor(table, 0.5) == pytest.approx(2.5)  # halfway in log(cores)
    conc = ((1.0, 1.0), (4.0, 3.0))
    assert scaling_factor(conc, 8.0, proportional_beyond=True) == pytest.approx(6.0)


def test_profiler_recovers_known_behaviour_from_the_sim() -> None:
    truth = Profile(
        functions={
            "f": FunctionProfile(
                service_s=Distribution.constant(0.2),
                cold_start_s=Distribution.constant(1.5),
                cpu_scaling=((0.5, 2.0), (1.0, 1.0)),
                idle_scaling=((0.01, 1.0), (1.0, 2.0), (3.0, 3.0)),
            )
        },
        gateway_overhead_s=Distribution.constant(0.001),
    )
    sim = SimPlatform(truth)
    measured = profile_functions(
        sim,
        [FunctionSpec(name="f")],
        {"f": [b"{}"]},
        settings=ProfileSettings(
            n_service=5,
            n_cold=2,
            cpu_levels=(0.5, 1.0),
            concurrency_levels=(1,),
            idle_levels=(0.3, 1.0, 3.0),
        ),
        measure_memory=False,
    )
    fp = measured.functions["f"]
    assert fp.service_s.quantile_s(0.5) == pytest.approx(0.201)
    assert dict(fp.cpu_scaling)[0.5] == pytest.approx(0.401 / 0.201)
    # after 0.3 s idle: log-linear between 0.01 s (1x) and 1 s (2x); after 3 s: 3x (each
    # pause also holds the client's 1 ms after the previous call: rel=2e-3)
    at_03 = 1.0 + math.log(0.3 / 0.01) / math.log(1.0 / 0.01)
    idle = dict(fp.idle_scaling)
    assert idle[0.01] == 1.0
    assert idle[0.3] == pytest.approx((0.2 * at_03 + 0.001) / 0.201, rel=2e-3)
    assert idle[1.0] == pytest.approx(0.401 / 0.201, rel=2e-3)
    assert idle[3.0] == pytest.approx(0.601 / 0.201, rel=2e-3)
    assert fp.cold_start_s.quantile_s(0.5) == pytest.approx(1.5)
    assert measured.provenance["machine"]["cpu_count"] >= 1


def test_profiler_fits_the_cores_a_start_keeps_busy_from_a_storm(tmp_path: Path) -> None:
    truth = Profile(
        functions={
            "f": FunctionProfile(
                service_s=Distribution.constant(0.1),
                cold_start_s=Distribution.constant(1.0),
                cold_start_cores=1.5,
            )
        },
        gateway_overhead_s=Distribution.constant(0.0),
    )

    def measure(storm: int) -> Profile:
        return profile_functions(
            SimPlatform(truth, host_cores=2, workflows=()),
            [FunctionSpec(name="f")],
            {"f": [b"{}"]},
            settings=ProfileSettings(
                n_service=3,
                n_cold=2,
                cpu_levels=(1.0,),
                concurrency_levels=(1,),
                storm_replicas=storm,
            ),
            measure_memory=False,
        )

    measured = measure(8)
    fp = measured.functions["f"]
    assert fp.cold_start_cores == pytest.approx(1.5)
    assert fp.extra["notes"]["start_storm"]["median_s"] == pytest.approx(6.0)  # 8 x 1.5 / 2
    again = load_profile(save_profile(measured, tmp_path / "profile.json"), check_conditions=False)
    assert again.functions["f"].cold_start_cores == pytest.approx(1.5)
    no_storm = measure(0)
    assert no_storm.functions["f"].cold_start_cores == 1.0


def test_start_cores_fit_and_validation() -> None:
    assert fit_start_cores(alone_s=2.0, storm_s=8.0, replicas=8, cores=2) == 1.0
    assert fit_start_cores(alone_s=1.0, storm_s=1.0, replicas=8, cores=2) == 0.25
    assert fit_start_cores(alone_s=1.0, storm_s=100.0, replicas=8, cores=2) == 2.0  # clipped
    with pytest.raises(ValueError):
        fit_start_cores(alone_s=1.0, storm_s=2.0, replicas=1, cores=2)
    with pytest.raises(ValueError):
        fit_start_cores(alone_s=1.0, storm_s=2.0, replicas=4, cores=math.inf)
    raw = {
        "service_s": Distribution.constant(0.1).to_json(),
        "cold_start_s": Distribution.constant(1.0).to_json(),
    }
    for bad in (0, -1.0, True, "2"):
        with pytest.raises(ConfigError, match="cold_start_cores"):
            FunctionProfile.from_json({**raw, "cold_start_cores": bad}, where="p.f")
    assert FunctionProfile.from_json(raw, where="p.f").cold_start_cores == 1.0
    assert "cold_start_cores" not in FunctionProfile.from_json(raw, where="p.f").to_json()


def test_shipped_reference_profile_covers_the_stack() -> None:
    from testbed.core.stack import load_stack

    profile = load_profile(default_profile_path())
    facts = profile.provenance
    assert facts["machine"]["uname"] and facts["date"] and facts["method"]
    stack = load_stack(REPO / "stack.yml")
    missing = [spec.name for spec in stack if spec.name not in profile.functions]
    assert not missing
    for name, fp in profile.functions.items():
        assert fp.service_s.kind == "empirical" and fp.cold_start_s.kind == "empirical", name
        assert fp.memory_mb is not None and fp.memory_mb > 0, name
    sim = SimPlatform(seed=0)  # the default profile works out of the box
    for spec in stack:
        sim.deploy(spec)
    assert all(sim.invoke(spec.name).ok for spec in stack)
