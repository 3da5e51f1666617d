"""Each shipped workflow end to end through a real local gateway, replicas as processes."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions import workloads
from functions.common.models import cache_dir

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, stack: Any, catalog: Any) -> Iterator[Any]:
    from testbed.backends import connect

    state = tmp_path_factory.mktemp("gateway")
    env = {"SOCIAL_DB": str(state / "social.db"), "AQUATOPE_MODEL_DIR": str(cache_dir())}
    with connect("local", state_dir=state) as p:
        for name in sorted(catalog.functions):
            spec = stack[name]
            p.deploy(dataclasses.replace(spec, env={**spec.env, **env}))
            p.scale(name, replicas=1)  # start every replica at once, not stage by stage
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = set(catalog.functions)
        while waiting and time.monotonic() < deadline:
            waiting = {n for n in waiting if p.status(n).replicas_ready < 1}
            if waiting:
                time.sleep(0.2)
        assert not waiting, f"replicas not ready after {READY_TIMEOUT_S} s: {sorted(waiting)}"
        yield p


def _run(platform: Any, workflow: str, payload: bytes) -> dict[str, Any]:
    result = platform.invoke(workflow, payload, workflow=True, timeout_s=60)
    assert result.status_code == 200, result.body[:500]
    body = json.loads(result.body)
    assert all(stage["status"] == 200 for stage in body["stages"])
    return body


def test_ml_pipeline_labels_digits(platform: Any, catalog: Any) -> None:
    rng = random.Random(21)
    correct = 0
    for _ in range(5):
        sample = workloads.ml_sample(rng)
        body = _run(platform, "ml-pipeline", sample.payload)
        assert {s["stage"] for s in body["stages"]} == {
            s.name for s in catalog.get("ml-pipeline").stages
        }
        out = body["output"]
        correct += tuple(out["digit-classifier"]["labels"]) == sample.labels
        correct += tuple(out["digit-classifier-svm"]["labels"]) == sample.labels
    assert correct >= 8


def test_video_analytics_reads_the_digits_after_a_long_first_stage(platform: Any) -> None:
    for index in (0, 1):
        sample = workloads.video_clip(index)
        body = _run(platform, "video-analytics", sample.payload)
        stages = {s["stage"]: s for s in body["stages"]}
        assert stages["keyframe-extractor"]["duration_s"] > 0.3  # seconds of motion analysis
        assert (
            stages["keyframe-extractor"]["duration_s"]
            > 10 * stages["image-processing"]["duration_s"]
        )
        assert tuple(body["output"]["digit-classifier"]["labels"]) == sample.clip.labels


def test_social_compose_then_read(platform: Any) -> None:
    author = 0
    payload = json.dumps({"user_id": author, "text": "through the gateway @user_7"}).encode()
    out = _run(platform, "social-compose-post", payload)["output"]
    post_id = out["write-user-timeline"]["post_id"]
    assert out["write-home-timeline"]["added"] >= 1

    mine = _run(platform, "social-read-user", json.dumps({"user_id": author}).encode())
    assert mine["output"]["posts"][0]["post_id"] == post_id
    assert mine["output"]["posts"][0]["text"] == "through the gateway @user_7"

    home = _run(platform, "social-read-home", json.dumps({"user_id": 7, "stop": 50}).encode())
    assert post_id in [p["post_id"] for p in home["output"]["posts"]]


def test_social_mix_payloads_all_succeed(platform: Any, catalog: Any) -> None:
    mix = catalog.resolve("social-network")
    rng = random.Random(4)
    for _ in range(10):
        workflow = workloads.resolve(dict(mix.weights), rng)
        _run(platform, workflow, workloads.make_payload(workflow, rng))


def test_bad_input_through_the_gateway_is_a_400(platform: Any) -> None:
    result = platform.invoke("compose-post", b'{"user_id": -5, "text": "x"}')
    assert result.status_code == 400
    assert "no user" in json.loads(result.body)["error"]
