"""noop and cpu-burn, the JSON helpers, and the request payload generators."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from functions import workloads
from functions.common.http import BadInput, field, parse_object
from functions.inprocess import call, load_handlers


@pytest.fixture(scope="module")
def handlers() -> dict[str, Any]:
    return load_handlers(["noop", "cpu-burn"])


def test_noop(handlers: dict[str, Any]) -> None:
    response = call(handlers["noop"], b"")
    assert response.status_code == 200
    assert json.loads(response.body) == {"ok": True}


def test_cpu_burn_does_the_work(handlers: dict[str, Any]) -> None:
    out = json.loads(call(handlers["cpu-burn"], {"n": 1000}).body)
    digest = b"aquatope"
    for _ in range(1000):
        digest = hashlib.sha256(digest).digest()
    assert out["digest"] == digest.hex()
    assert out["primes"] == 25  # primes below 100
    assert out["cpu_s"] > 0


@pytest.mark.parametrize("body", [{"n": 0}, {"n": 10**9}, {"n": "5"}, {}, b"[]"])
def test_cpu_burn_rejects_bad_sizes(handlers: dict[str, Any], body: Any) -> None:
    assert call(handlers["cpu-burn"], body).status_code == 400


def test_field_checks_types() -> None:
    obj = {"a": 1, "b": True, "c": "x"}
    assert field(obj, "a", int) == 1
    assert field(obj, "missing", int, default=7) == 7
    with pytest.raises(BadInput, match="'b' must be an integer, got a boolean"):
        field(obj, "b", int)
    with pytest.raises(BadInput, match=r"'outer\.c' must be an integer or a number"):
        field(obj, "c", (int, float), where="outer")
    with pytest.raises(BadInput, match="JSON object"):
        parse_object(b"3")


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 100_000])
def test_deeply_nested_json_is_a_400_not_a_crash(handlers: dict[str, Any], body: bytes) -> None:
    with pytest.raises(BadInput, match="nested too deeply"):
        parse_object(body)
    response = call(handlers["cpu-burn"], body)
    assert response.status_code == 400, response.body[:200]
    assert b"nested too deeply" in response.body


@pytest.mark.parametrize("workflow", workloads.WORKFLOWS)
def test_payloads_are_deterministic_small_json(workflow: str) -> None:
    a = [workloads.make_payload(workflow, random.Random(42)) for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(1)
    limit = 1_000_000 if workflow == "video-analytics" else 8_000  # a clip of 96 frames
    for _ in range(20):
        payload = workloads.make_payload(workflow, rng)
        assert len(payload) < limit
        assert isinstance(json.loads(payload), dict)


def test_every_concrete_workflow_has_payloads(catalog: Any) -> None:
    for name in catalog.workflows:
        assert workloads.make_payload(name, random.Random(0))
    with pytest.raises(KeyError, match="social-network"):
        workloads.make_payload("social-network", random.Random(0))


def test_ml_sample_labels_match_digit_count() -> None:
    rng = random.Random(5)
    counts = set()
    for _ in range(30):
        sample = workloads.ml_sample(rng)
        assert 1 <= len(sample.labels) <= 3
        assert all(0 <= label <= 9 for label in sample.labels)
        counts.add(len(sample.labels))
    assert counts == {1, 2, 3}
    assert len(workloads.ml_sample(random.Random(0), n_digits=2).labels) == 2


def test_mix_resolution_follows_weights(catalog: Any) -> None:
    mix = catalog.resolve("social-network")
    rng = random.Random(3)
    picks = [workloads.resolve(dict(mix.weights), rng) for _ in range(2000)]
    share = picks.count("social-compose-post") / len(picks)
    assert 0.17 < share < 0.23
