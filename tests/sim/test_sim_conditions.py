"""Profiles record the conditions they were measured under and warn when they differ."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from testbed.cli.profile import _busy_warning
from testbed.core.platform import FunctionSpec
from testbed.sim.conditions import condition_warnings, cpu_quota_cores, current_conditions
from testbed.sim.distributions import Distribution
from testbed.sim.platform import SimPlatform
from testbed.sim.profile import Profile, load_profile, save_profile
from testbed.sim.profiler import ProfileSettings, profile_functions, trim_outliers
from tests.sim.sim_helpers import make_profile

HERE = {"cpu_count": 2, "cpu_model": "AMD EPYC", "cpu_quota_cores": None, "loadavg": [1.0, 1, 1]}


def _provenance(**start: object) -> dict[str, object]:
    return {"conditions": {"start": {**HERE, **start}, "end": {**HERE, **start}}}


def test_trim_outliers_drops_far_out_stalls_only() -> None:
    samples = [0.010, 0.011, 0.012, 0.011, 0.010, 0.013, 0.012, 0.011, 0.010, 0.250]
    kept, dropped = trim_outliers(samples, 3.0)
    assert dropped == 1 and max(kept) == 0.013
    assert trim_outliers(samples, 0.0) == (samples, 0)
    assert trim_outliers([0.01, 0.5, 0.6], 3.0) == ([0.01, 0.5, 0.6], 0)  # too few to judge
    # a heavy tail (a third of the samples) is the function's behaviour, not a stall: kept
    bimodal = [0.01] * 6 + [0.5] * 3
    assert trim_outliers(bimodal, 3.0) == (bimodal, 0)


def test_same_conditions_give_no_warning() -> None:
    assert condition_warnings(_provenance(), HERE) == []
    assert condition_warnings({}, HERE) == []  # nothing recorded, nothing to compare


def test_different_machine_quota_and_load_are_named() -> None:
    lines = condition_warnings(
        _provenance(cpu_count=8, cpu_model="Xeon", cpu_quota_cores=2.0, loadavg=[12.0, 9, 9]),
        HERE,
    )
    text = "\n".join(lines)
    assert len(lines) == 4
    assert "8 cores" in text and "Xeon" in text and "quota of 2.0" in text
    assert "load of 1.50 per core, now 0.50" in text


def test_old_profiles_compare_their_machine() -> None:
    old = {"machine": {"cpu_count": 4, "cpu_model": "AMD EPYC"}}
    assert condition_warnings(old, HERE) == ["profile measured on 4 cores, this machine has 2"]


def test_load_profile_warns_once_per_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profile = make_profile(["f"])
    far = Profile(profile.functions, provenance={"machine": {"cpu_count": 4096}})
    path = save_profile(far, tmp_path / "profile.json")
    with caplog.at_level(logging.WARNING, logger="aquatope.sim"):
        load_profile(path)
        load_profile(path)
        load_profile(path, check_conditions=False)
    warned = [r for r in caplog.records if "4096 cores" in r.getMessage()]
    assert len(warned) == 1 and str(path) in warned[0].getMessage()


def test_profiler_records_conditions_and_drops_stalls() -> None:
    truth = make_profile(
        ["f"],
        service=Distribution.empirical([0.2] * 19 + [5.0]),
        cold=Distribution.constant(1.0),
    )
    measured = profile_functions(
        SimPlatform(truth, seed=1, workflows=()),
        [FunctionSpec(name="f")],
        {"f": [b"{}"]},
        settings=ProfileSettings(
            n_service=40, n_cold=2, cpu_levels=(1.0,), concurrency_levels=(1,)
        ),
        measure_memory=False,
    )
    conditions = measured.provenance["conditions"]
    assert set(conditions) == {"start", "end"}
    assert conditions["start"]["cpu_count"] == current_conditions()["cpu_count"]
    fp = measured.functions["f"]
    assert max(fp.service_s.samples) == pytest.approx(0.2)  # the 5 s stalls were dropped
    assert fp.extra["notes"]["service_outliers_dropped"] >= 1


def test_cpu_quota_is_read_from_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota_cores(tmp_path / "cpu.max") == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota_cores(tmp_path / "cpu.max") is None
    assert cpu_quota_cores(tmp_path / "missing") is None


def test_profile_cli_warns_when_the_machine_was_loaded() -> None:
    quiet = {"start": {**HERE, "loadavg": [1.0]}, "end": {**HERE, "loadavg": [1.5]}}
    assert _busy_warning(quiet) == ""
    busy = {"start": {**HERE, "loadavg": [7.0]}, "end": {**HERE, "loadavg": [3.0]}}
    assert "3.50 runnable per core on 2 cores" in _busy_warning(busy)
