"""Warm service times from live runs (``aquatope profile-from-runs``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from testbed.cli import cli
from testbed.core.errors import ConfigError
from testbed.experiment.live_profile import live_samples
from testbed.experiment.results import find_runs, load_run
from testbed.sim.distributions import Distribution
from testbed.sim.profile import FunctionProfile, Profile, load_profile
from testbed.sim.warm_samples import (
    LiveSamples,
    WarmSamples,
    _max_in_flight,
    _request_overheads,
    fit_idle_scaling,
    idle_before,
    uncontended_warm,
    with_warm_service,
)

REPO = Path(__file__).resolve().parents[2]


def _stages(rows: list[tuple[str, float, float, bool, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["function", "start_s", "end_s", "cold_start", "status"])
    frame["duration_s"] = frame["end_s"] - frame["start_s"]
    return frame


def test_most_in_flight_during_each_interval() -> None:
    start = np.array([0.0, 1.0, 2.0, 5.0, 5.0, 9.0])
    end = np.array([4.0, 3.0, 2.5, 6.0, 5.0, 9.5])
    # [0,4) meets [1,3) and [2,2.5) at once: 3; [5,6) alone (the empty [5,5) counts nothing);
    # an interval ending when another starts does not overlap it
    assert _max_in_flight(start, end).tolist() == [3, 3, 3, 1, 0, 1]


def test_uncontended_warm_keeps_only_what_the_simulator_would_not_stretch() -> None:
    stages = _stages(
        [
            ("a", 0.0, 1.0, False, 200),  # 0: alone: kept
            ("a", 2.0, 3.0, False, 200),  # 1: another call of a overlaps: queue/concurrency
            ("a", 2.5, 3.5, False, 200),  # 2: likewise
            ("b", 4.0, 5.0, False, 200),  # 3: a cold start of c overlaps it
            ("c", 4.5, 6.0, True, 200),  # 4: cold itself
            ("b", 7.0, 8.0, False, 500),  # 5: failed
            ("b", 10.0, 11.0, False, 200),  # 6: with d and e in flight: 3 > 2 cores
            ("d", 10.2, 10.8, False, 200),  # 7: likewise
            ("e", 10.4, 10.6, False, 200),  # 8: likewise
            ("b", 20.0, 20.5, False, 200),  # 9: with d only: 2 <= 2 cores: kept
            ("d", 20.1, 20.4, False, 200),  # 10: kept
            ("b", 30.0, 30.5, False, 200),  # 11: a replica of x starting nearby (timeline)
        ]
    )
    timeline = pd.DataFrame(
        {"t_s": [29.0, 30.0, 31.0], "function": "x", "replicas_starting": [0, 1, 0]}
    )
    kept = uncontended_warm(stages, host_cores=2, timeline=timeline)
    assert np.flatnonzero(kept).tolist() == [0, 9, 10]
    # on a 3-core host the three overlapping stages are fine too
    kept3 = uncontended_warm(stages, host_cores=3, timeline=timeline)
    assert np.flatnonzero(kept3).tolist() == [0, 6, 7, 8, 9, 10]


def _profile() -> Profile:
    fast = Distribution.empirical([0.001])
    return Profile(
        {
            "a": FunctionProfile(fast, fast, cpu_scaling=((0.5, 2.0), (1.0, 1.0))),
            "b": FunctionProfile(fast, fast),
        },
        provenance={"method": "test"},
    )


def test_with_warm_service_replaces_only_functions_with_enough_samples() -> None:
    base = _profile()
    warm = {"a": WarmSamples([0.01] * 3, [0.2] * 3), "b": WarmSamples([0.02], [0.2])}
    out = with_warm_service(base, LiveSamples(warm), min_samples=2)
    assert out.functions["a"].service_s.samples == (0.01, 0.01, 0.01)
    assert out.functions["a"].idle_scaling == ()  # one idle bin: nothing to fit
    assert out.functions["b"] is base.functions["b"]
    assert out.functions["a"].cpu_scaling == base.functions["a"].cpu_scaling
    facts = out.provenance["warm_service"]
    assert facts["replaced"] == {"a": 3} and facts["kept_from_profile"] == ["b"]
    with pytest.raises(ConfigError, match="min_samples"):
        with_warm_service(base, LiveSamples(), min_samples=0)


def test_idle_before_is_the_time_since_the_functions_last_call_ended() -> None:
    stages = _stages(
        [
            ("a", 0.0, 1.0, False, 200),
            ("b", 0.5, 0.6, False, 200),
            ("a", 0.8, 2.0, False, 200),  # overlapping the first a: 0
            ("a", 5.0, 5.5, False, 200),  # the last a ended at 2.0: 3 s
            ("b", 1.6, 1.7, False, 200),  # 1 s after b's first
        ]
    )
    idle = idle_before(stages)
    assert np.isnan(idle[0]) and np.isnan(idle[1])
    assert idle[2:].tolist() == pytest.approx([0.0, 3.0, 1.0])


def test_idle_scaling_is_fitted_and_divided_out_of_the_reference() -> None:
    rng = np.random.default_rng(0)
    idle = rng.choice([0.05, 0.5, 2.0, 6.0], size=400)
    slower = {0.05: 1.0, 0.5: 1.5, 2.0: 3.0, 6.0: 4.0}
    durations = 0.004 * np.array([slower[g] for g in idle]) * rng.uniform(0.95, 1.05, idle.size)
    table = fit_idle_scaling(durations, idle)
    assert [level for level, _ in table] == pytest.approx([0.05, 0.5, 2.0, 6.0])
    assert [factor for _, factor in table] == pytest.approx([1.0, 1.5, 3.0, 4.0], rel=0.05)
    assert fit_idle_scaling(durations[idle == 0.05], idle[idle == 0.05]) == ()
    base = _profile()
    idle_s = [float("nan"), *idle.tolist()]  # a first call: its idle time is unknown
    out = with_warm_service(
        base, LiveSamples({"a": WarmSamples([1.0, *durations.tolist()], idle_s)})
    )
    fp = out.functions["a"]
    assert fp.idle_scaling == table
    assert len(fp.service_s.samples) == idle.size  # the first call left out
    # what is left is the least idle reference: 4 ms, whatever the idle time
    assert np.median(fp.service_s.samples) == pytest.approx(0.004, rel=0.05)
    assert max(fp.service_s.samples) < 0.0045
    plain = with_warm_service(
        base, LiveSamples({"a": WarmSamples(durations.tolist(), idle.tolist())}), idle=False
    )
    assert (
        plain.functions["a"].idle_scaling == ()
        and max(plain.functions["a"].service_s.samples) > 0.015
    )


def test_gateway_overhead_is_what_warm_requests_spent_outside_their_stages() -> None:
    requests = pd.DataFrame(
        {
            "request_id": [0, 1, 2, 3],
            "sent_s": [0.0, 1.0, 2.0, 3.0],
            "end_s": [0.5, 1.5, 2.5, 3.5],
            "ok": [True, True, False, True],
            "cold_stages": [0, 0, 0, 1],
        }
    )
    stages = _stages(
        [
            ("a", 0.003, 0.2, False, 200),  # request 0: 3 ms before its stages ...
            ("b", 0.2, 0.499, False, 200),  # ... 1 ms after
            ("a", 1.010, 1.495, False, 200),  # request 1: 10 ms + 5 ms
            ("a", 2.001, 2.4, False, 500),  # request 2 failed: left out
            ("a", 3.001, 3.4, True, 200),  # request 3 started cold: left out
        ]
    )
    stages["request_id"] = [0, 0, 1, 2, 3]
    assert _request_overheads(requests, stages).tolist() == pytest.approx([0.004, 0.015])
    base = _profile()
    warm = {"a": WarmSamples([0.01] * 3, [0.2] * 3)}
    out = with_warm_service(base, LiveSamples(warm, [0.004, 0.015]), min_samples=2)
    assert out.gateway_overhead_s.samples == (0.004, 0.015)
    assert out.provenance["warm_service"]["gateway_overhead_samples"] == 2
    kept = with_warm_service(base, LiveSamples(warm, [0.004, 0.015]), min_samples=3)
    assert kept.gateway_overhead_s == base.gateway_overhead_s  # too few: the profile's


def test_simulated_runs_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(_config("sim", duration_s=4))
    result = CliRunner().invoke(cli, ["experiment", "run", str(config), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    with pytest.raises(ConfigError, match="a simulated run"):
        live_samples([tmp_path / "o"], _profile())
    result = CliRunner().invoke(
        cli, ["profile-from-runs", str(tmp_path / "o"), "-o", str(tmp_path / "p")]
    )
    assert result.exit_code != 0 and "a simulated run" in result.output
    assert not (tmp_path / "p" / "profile.json").exists()


def _config(backend: str, *, duration_s: float, profile: Path | None = None) -> str:
    options = f"backend_options: {{profile: {profile}}}\n" if profile else ""
    return f"""\
name: warm
backend: {backend}
{options}stack: {REPO / "stack.yml"}
workflows: [social-read-home]
trace:
  kind: poisson
  minutes: 2
  compress: 4
  options: {{rate_per_min: 40}}
duration_s: {duration_s}
warmup_s: 2
drain_s: 3
seeds: [5]
sample_s: 0.5
loadgen: {{timeout_s: 20, locust_csv: false}}
policies:
  - name: always-on
"""


def _warm_median(run_dir: Path) -> dict[str, float]:
    stages = load_run(run_dir).stages
    warm = stages[(~stages["cold_start"].astype(bool)) & (stages["status"] == 200)]
    return {str(k): float(v) for k, v in warm.groupby("function")["duration_s"].median().items()}


@pytest.mark.slow
def test_a_profile_from_a_live_run_gives_the_sim_its_warm_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live, then simulated on the warm times read off the live run: the simulated warm
    stages take what the live ones took (median within a factor of 1.5 per function), not
    what calls timed alone on an idle gateway took."""
    monkeypatch.setenv("AQUATOPE_HOME", str(tmp_path / "home"))
    live_cfg = tmp_path / "live.yaml"
    live_cfg.write_text(_config("local", duration_s=20))
    runner = CliRunner()
    result = runner.invoke(cli, ["experiment", "run", str(live_cfg), "-o", str(tmp_path / "live")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "profile-from-runs",
            str(tmp_path / "live"),
            "-o",
            str(tmp_path / "p"),
            "--min-samples",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    raw = json.loads((tmp_path / "p" / "profile.json").read_text())
    replaced = raw["provenance"]["warm_service"]["replaced"]
    assert replaced, result.output
    assert raw["provenance"]["warm_service"]["gateway_overhead_samples"] >= 8
    profile = load_profile(tmp_path / "p" / "profile.json", check_conditions=False)
    shipped = load_profile(None, check_conditions=False)
    for name in replaced:  # cold starts and scaling stay the shipped profile's
        assert profile.get(name).cold_start_s == shipped.get(name).cold_start_s
    sim_cfg = tmp_path / "sim.yaml"
    sim_cfg.write_text(_config("sim", duration_s=20, profile=tmp_path / "p" / "profile.json"))
    result = runner.invoke(cli, ["experiment", "run", str(sim_cfg), "-o", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    (live_run,) = find_runs([tmp_path / "live"])
    (sim_run,) = find_runs([tmp_path / "sim"])
    live, sim = _warm_median(live_run), _warm_median(sim_run)
    for name in replaced:
        assert 1 / 1.5 <= sim[name] / live[name] <= 1.5, (name, live[name], sim[name])


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "comma-separated numbers"), ("-1", "positive numbers")],
)
def test_profile_rejects_bad_idle_levels_before_measuring(
    tmp_path: Path, value: str, message: str
) -> None:
    result = CliRunner().invoke(cli, ["profile", "--idle-levels", value, "-o", str(tmp_path / "p")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "p" / "profile.json").exists()
