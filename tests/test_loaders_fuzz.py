"""Property tests: every loader of user files gives a valid object or one ConfigError.

Malformed stack files, workflow files, experiment and evaluation configs and traces must
never end in another exception type (a traceback for the user); hypothesis generates the
malformed inputs, seeded by realistic ones.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.core.errors import ConfigError

FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
REPO = Path(__file__).resolve().parents[1]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.printable, max_size=12),
)
keys = st.one_of(st.text(string.ascii_letters + "_.-", min_size=1, max_size=12), st.integers())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def mutated(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A realistic mapping with one key replaced, dropped or added, or something else entirely."""
    replaced = st.tuples(st.sampled_from(sorted(base)), values).map(
        lambda kv: {**base, kv[0]: kv[1]}
    )
    dropped = st.sampled_from(sorted(base)).map(
        lambda k: {key: v for key, v in base.items() if key != k}
    )
    added = st.tuples(keys, values).map(lambda kv: {**base, kv[0]: kv[1]})
    return st.one_of(replaced, dropped, added, values)


def _outcome(load: Any, *args: Any, **kwargs: Any) -> None:
    try:
        load(*args, **kwargs)
    except ConfigError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)


EXPERIMENT = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
STACK = yaml.safe_load((REPO / "stack.yml").read_text())
WORKFLOW = yaml.safe_load((REPO / "functions" / "workflows" / "ml-pipeline.yaml").read_text())
EVALUATION = yaml.safe_load((REPO / "experiments" / "evaluation.yaml").read_text())


@FUZZ
@given(raw=mutated(EXPERIMENT))
def test_experiment_configs(raw: Any) -> None:
    from testbed.experiment.spec import parse_spec

    _outcome(parse_spec, raw, source=REPO / "experiments" / "fuzz.yaml")


@FUZZ
@given(raw=mutated(EVALUATION))
def test_evaluation_configs(raw: Any) -> None:
    from testbed.experiment.evaluation import parse_evaluation

    _outcome(parse_evaluation, raw, source=REPO / "experiments" / "fuzz.yaml")


@FUZZ
@given(raw=mutated(STACK), body=st.sampled_from(["yaml", "text"]), text=st.text(max_size=80))
def test_stack_files(raw: Any, body: str, text: str) -> None:
    from testbed.core.stack import load_stack

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.yml"
        path.write_text(yaml.safe_dump(raw) if body == "yaml" else text)
        _outcome(load_stack, path)


@FUZZ
@given(raw=mutated(WORKFLOW), text=st.text(max_size=80), body=st.sampled_from(["yaml", "text"]))
def test_workflow_files(raw: Any, text: str, body: str) -> None:
    from testbed.core.workflows import load_workflows

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "wf.yaml").write_text(yaml.safe_dump(raw) if body == "yaml" else text)
        _outcome(load_workflows, tmp)


cells = st.one_of(
    st.integers(min_value=-5, max_value=10**6).map(str),
    st.sampled_from(["", "x", "1.5", "-1", "nan", "inf", "1e400", "http", "timer"]),
)


@FUZZ
@given(
    header_cut=st.integers(min_value=0, max_value=6),
    rows=st.lists(st.lists(cells, min_size=0, max_size=12), min_size=0, max_size=4),
)
def test_azure2019_invocation_files(header_cut: int, rows: list[list[str]]) -> None:
    from loadgen.traces.azure2019 import read_azure2019_counts

    header = ["HashOwner", "HashApp", "HashFunction", "Trigger", *map(str, range(1, 9))]
    header = header[: len(header) - header_cut] if header_cut else header
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invocations_per_function_md.anon.d01.csv"
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
        _outcome(read_azure2019_counts, path)


@FUZZ
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=5), min_size=0, max_size=5))
def test_azure2021_files(rows: list[list[str]]) -> None:
    from loadgen.traces.azure2021 import read_azure2021

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt"
        header = ["app", "func", "end_timestamp", "duration"]
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
        _outcome(read_azure2021, path)
