"""stack.yml and the workflow files agree with each other and with the function folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.core.config import parse_memory_mb

REPO = Path(__file__).resolve().parents[2]
TORCH_FUNCTIONS = {"object-detection", "digit-classifier"}


def test_every_workflow_function_is_in_the_stack(stack: Any, catalog: Any) -> None:
    assert catalog.functions <= set(stack.functions)


def test_every_function_folder_is_in_the_stack(stack: Any) -> None:
    folders = {p.parent.name for p in (REPO / "functions").glob("*/handler.py")}
    assert folders == set(stack.functions)
    for spec in stack:
        assert (Path(spec.handler) / "requirements.txt").is_file()
        assert spec.image == f"aquatope/{spec.name}:latest"
        assert spec.limits.cpu_cores and spec.limits.memory_mb
        assert spec.requests.memory_mb <= spec.limits.memory_mb
        assert spec.scale_bounds.min == 0


def test_torch_functions_have_room_for_torch(stack: Any) -> None:
    for name in TORCH_FUNCTIONS:
        assert stack[name].limits.memory_mb >= 512
        assert "torch" in (Path(stack[name].handler) / "requirements.txt").read_text()
    assert parse_memory_mb("768M") == stack["object-detection"].limits.memory_mb


def test_shipped_workflows_and_mix(catalog: Any) -> None:
    ml = catalog.get("ml-pipeline")
    assert [s.name for s in ml.topological_order()][:2] == ["image-processing", "object-detection"]
    assert set(ml.sinks) == {"digit-classifier", "digit-classifier-svm"}
    compose = catalog.get("social-compose-post")
    store = next(s for s in compose.stages if s.name == "store-post")
    assert set(store.after) == {"text-filter", "media-filter"}
    assert set(compose.sinks) == {"write-home-timeline", "write-user-timeline"}
    for name in ("social-read-home", "social-read-user"):
        assert catalog.get(name).sinks == ("read-post",)
    assert dict(catalog.resolve("social-network").weights) == {
        "social-compose-post": 0.2,
        "social-read-home": 0.4,
        "social-read-user": 0.4,
    }
    for wf in catalog.workflows.values():
        assert wf.qos.percentile == 95 and wf.qos.target_s > 0
