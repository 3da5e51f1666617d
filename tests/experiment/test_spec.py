"""The experiment config loader: validated dataclass, one-line errors naming file/line/field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testbed.core.errors import ConfigError
from testbed.experiment.spec import load_spec
from testbed.experiment.workload import build_trace

GOOD = """\
name: t
backend: sim
workflows: [ml-pipeline, social-network]
trace:
  kind: bursty
  minutes: 4
  compress: 4
  options: {rate_per_min: 30, on_min: 1, off_min: 1}
duration_s: 60
warmup_s: 5
repetitions: 2
policies:
  - name: always-on
  - name: keep-alive
    label: ka-5s
    params: {window_s: 5}
"""

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.name == "t" and spec.backend == "sim"
    assert spec.seeds == (0, 1)
    assert [p.label for p in spec.policies] == ["always-on", "ka-5s"]
    assert spec.policies[1].params == {"window_s": 5}
    assert spec.stack == (tmp_path / "stack.yml").resolve()  # relative to the file
    assert spec.trace.compress == 4 and spec.trace.options["rate_per_min"] == 30


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("duration_s: 60", "duration_s: -1"), r"exp.yaml: line 9: duration_s: .*greater than 0"),
        (("  minutes: 4", "  minutes: four"), r"line 6: trace.minutes: .*integer"),
        (("    label: ka-5s", "    label: always-on"), r"line 15: policies.1.label: .*used twice"),
        (("warmup_s: 5", "warmup_s: 90"), r"warmup_s' must be shorter"),
        (("repetitions: 2", "repetitions: 2\nseeds: [1]"), r"'seeds' or 'repetitions'"),
        (("  kind: bursty", "  kind: bursty\n  file: x.csv"), r"exactly one of 'kind'"),
        (("name: t", "name: T_bad"), r"line 1: name: name must be lowercase"),
        (("backend: sim", "backend: cloud"), r"line 2: backend: Input should be 'local'"),
        (("duration_s: 60", "duration_s: 60\nbogus: 1"), r"line 10: bogus: Extra inputs"),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError, match=message) as info:
        load_spec(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_stack_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stack: no such stack file"):
        load_spec(_write(tmp_path, GOOD.replace("backend: sim", "backend: local")))
    with pytest.raises(ConfigError, match=r"line 2, column \d+: invalid YAML"):
        load_spec(_write(tmp_path, "name: t\n  bad: [\n"))
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_spec(tmp_path / "nope.yaml")


def test_same_seed_same_arrivals_for_every_policy(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD))
    a = build_trace(spec.trace, spec.workflows, seed=0, duration_s=spec.duration_s)
    b = build_trace(spec.trace, spec.workflows, seed=0, duration_s=spec.duration_s)
    c = build_trace(spec.trace, spec.workflows, seed=1, duration_s=spec.duration_s)
    assert a.functions == ("ml-pipeline", "social-network")
    assert a.duration_s == 60
    for name in a.functions:
        assert np.array_equal(a.arrivals_s[name], b.arrivals_s[name])
    assert not np.array_equal(a.arrivals_s["ml-pipeline"], c.arrivals_s["ml-pipeline"])
    assert a.total > 20


def test_trace_shorter_than_duration_is_refused(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD.replace("compress: 4", "compress: 8")))
    with pytest.raises(ConfigError, match="trace lasts 30 s"):
        build_trace(spec.trace, spec.workflows, seed=0, duration_s=spec.duration_s)


@pytest.mark.parametrize("name", ["demo.yaml", "keepalive-sweep.yaml", "azure-like.yaml"])
def test_shipped_configs_parse(name: str) -> None:
    path = REPO / "experiments" / name
    spec = load_spec(path)
    assert spec.policies and spec.duration_s > spec.warmup_s
