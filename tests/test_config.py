"""Value objects and the stack/workflow loaders: valid input parses, bad input names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.core.config import Limits, ScaleBounds, parse_cpu, parse_memory_mb
from testbed.core.errors import ConfigError
from testbed.core.stack import load_stack
from testbed.core.workflows import load_workflows

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "mb"), [("128M", 128), ("1Gi", 1024), ("512Mi", 512), ("2G", 2048), (300, 300)]
)
def test_memory_quantities(text, mb: int) -> None:
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize(("text", "cores"), [("0.5", 0.5), ("500m", 0.5), (2, 2.0), ("1.25", 1.25)])
def test_cpu_quantities(text, cores: float) -> None:
    assert parse_cpu(text) == cores


@pytest.mark.parametrize("bad", ["", "fast", "-1", "0", "1 parsec", True])
def test_bad_quantities(bad) -> None:
    with pytest.raises(ConfigError):
        parse_memory_mb(bad)
    with pytest.raises(ConfigError):
        parse_cpu(bad)


def test_limits_round_trip_and_merge() -> None:
    limits = Limits.from_openfaas({"cpu": "250m", "memory": "1Gi"})
    assert limits == Limits(cpu_cores=0.25, memory_mb=1024)
    assert Limits.from_openfaas(limits.to_openfaas()) == limits
    assert limits.merged(Limits(cpu_cores=2)) == Limits(cpu_cores=2, memory_mb=1024)
    with pytest.raises(ConfigError, match="unknown field"):
        Limits.from_openfaas({"gpu": "1"})


def test_scale_bounds_clamp() -> None:
    assert ScaleBounds(1, 5).clamp(9) == 5
    assert ScaleBounds(1, 5).clamp(0) == 1
    with pytest.raises(ConfigError):
        ScaleBounds(3, 2)


def test_shipped_stack_and_workflows_agree() -> None:
    stack = load_stack(REPO / "stack.yml")
    catalog = load_workflows()
    assert {"ml-pipeline", "social-compose-post", "social-read-home", "social-read-user"} <= set(
        catalog.workflows
    )
    assert catalog.resolve("social-network").weights == {
        "social-compose-post": 0.2,
        "social-read-home": 0.4,
        "social-read-user": 0.4,
    }
    missing = catalog.functions - set(stack.functions)
    assert not missing, f"workflows call functions missing from stack.yml: {missing}"
    for spec in stack:
        assert Path(spec.handler, "handler.py").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("functions: [1, 2]", "functions"),
        ("functions:\n  f:\n    lang: cobol\n    handler: .", "lang"),
        ("functions:\n  f:\n    lang: python3-http\n", "handler"),
        ("functions:\n  f:\n    handler: ./nowhere\n", "has no handler.py"),
        ("functions:\n  f: {handler: x\n", "line 3, column 1"),
        ("functions:\n  Bad_Name:\n    handler: .\n", "function name"),
    ],
)
def test_bad_stack_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "handler.py").write_text("def handle(e, c): return 1\n")
    path = tmp_path / "stack.yml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_stack(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: w\nqos: {target_s: 1}\nstages:\n  - {name: a, after: [b]}\n", "unknown stage 'b'"),
        (
            "name: w\nqos: {target_s: 1}\nstages:\n"
            "  - {name: a, after: [b]}\n  - {name: b, after: [a]}\n",
            "cycle",
        ),
        ("name: w\nqos: {target_s: -1}\nstages:\n  - {name: a}\n", "target_s"),
        ("name: w\nstages:\n  - {name: a}\n", "qos"),
        ("name: w\nqos: {target_s: 1}\nstages:\n  - {name: a, colour: red}\n", "colour"),
        ("name: m\nmix: {nowhere: 1.0}\n", "unknown workflow 'nowhere'"),
    ],
)
def test_bad_workflow_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "w.yaml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_workflows(tmp_path)


def test_workflow_dag_helpers(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "name: w\nqos: {target_s: 2, percentile: 99}\nstages:\n"
        "  - {name: a}\n  - {name: b, after: [a]}\n  - {name: c, after: [a]}\n"
        "  - {name: d, function: shared, after: [b, c]}\n"
    )
    wf = load_workflows(tmp_path).get("w")
    assert wf.roots == ("a",) and wf.sinks == ("d",)
    assert [s.name for s in wf.topological_order()] == ["a", "b", "c", "d"]
    assert wf.functions == ("a", "b", "c", "shared")
    assert wf.qos.percentile == 99
