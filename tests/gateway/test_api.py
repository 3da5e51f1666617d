"""The gateway's OpenFaaS API over real HTTP, against a real gateway process and real replicas."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from testbed.backends import connect
from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.latency import WorkflowMetrics, latencies_between
from tests.helpers import wait_until

WORKFLOW = """
name: shout
qos: {percentile: 95, target_s: 5}
stages:
  - name: first
    function: upper
  - name: left
    function: upper
    after: [first]
  - name: right
    function: upper
    after: [first]
  - name: join
    function: joiner
    after: [left, right]
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, handler_dirs: dict[str, Path]
) -> Iterator[tuple[OpenFaaSPlatform, httpx.Client, httpx.Client]]:
    home = tmp_path_factory.mktemp("home")
    workflows = tmp_path_factory.mktemp("workflows")
    (workflows / "shout.yaml").write_text(WORKFLOW)
    platform = connect("local", state_dir=home, workflows_dir=workflows)
    assert isinstance(platform, OpenFaaSPlatform)
    password = (home / "basic-auth-password").read_text().strip()
    admin = httpx.Client(base_url=platform.url, auth=("admin", password), timeout=30)
    anon = httpx.Client(base_url=platform.url, timeout=30)
    for name, handler in (("echo", "echo"), ("upper", "upper"), ("joiner", "upper")):
        r = admin.post(
            "/system/functions",
            json={
                "service": name,
                "image": f"aquatope/{name}:latest",
                "annotations": {"com.aquatope.handler": str(handler_dirs[handler])},
                "labels": {"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "4"},
                "limits": {"cpu": "1", "memory": "256M"},
            },
        )
        assert r.status_code == 202, r.text
    try:
        yield platform, admin, anon
    finally:
        admin.close()
        anon.close()
        platform.close()


def test_healthz_needs_no_auth(gateway) -> None:
    _, _, anon = gateway
    assert anon.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/system/info"),
        ("GET", "/system/functions"),
        ("POST", "/system/functions"),
        ("PUT", "/system/functions"),
        ("DELETE", "/system/functions"),
        ("GET", "/system/function/echo"),
        ("POST", "/system/scale-function/echo"),
        ("POST", "/system/limits/echo"),
        ("GET", "/system/workflows"),
        ("GET", "/system/namespaces"),
        ("HEAD", "/system/functions"),
    ],
)
def test_system_endpoints_need_basic_auth(gateway, method: str, path: str) -> None:
    _, _, anon = gateway
    assert anon.request(method, path, json={}).status_code == 401
    wrong = anon.request(method, path, json={}, auth=("admin", "not-the-password"))
    assert wrong.status_code == 401


def test_info_and_list(gateway) -> None:
    _, admin, _ = gateway
    info = admin.get("/system/info").json()
    assert info["provider"]["orchestration"] == "local"
    names = {f["name"] for f in admin.get("/system/functions").json()}
    assert {"echo", "upper", "joiner"} <= names


def test_function_status_shape(gateway) -> None:
    _, admin, _ = gateway
    status = admin.get("/system/function/echo").json()
    assert status["name"] == "echo"
    assert status["limits"] == {"cpu": "1", "memory": "256Mi"}
    assert status["labels"]["com.openfaas.scale.max"] == "4"
    assert {"replicas", "availableReplicas", "invocationCount"} <= set(status)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": "x"}, "service"),
        ({"service": "Bad_Name", "image": "x"}, "service"),
        ({"service": "ok", "limits": {"cpu": "lots"}}, "limits"),
        ({"service": "ok", "limits": {"memory": "12 parsecs"}}, "limits"),
        ({"service": "nohandler", "image": "x"}, "handler"),
        ([1, 2], "body"),
        ("{not json", "body"),
    ],
)
def test_bad_deploy_bodies_are_400_naming_the_field(gateway, body, field: str) -> None:
    _, admin, _ = gateway
    if isinstance(body, str):
        r = admin.post("/system/functions", content=body)
    else:
        r = admin.post("/system/functions", json=body)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_duplicate_deploy_is_409_and_update_of_missing_is_404(gateway, handler_dirs) -> None:
    _, admin, _ = gateway
    body = {"service": "echo", "annotations": {"com.aquatope.handler": str(handler_dirs["echo"])}}
    assert admin.post("/system/functions", json=body).status_code == 409
    body["service"] = "ghost"
    assert admin.put("/system/functions", json=body).status_code == 404


def _canary_body(handler: Path, of: str, share: str, name: str | None = None) -> dict[str, object]:
    return {
        "service": name or f"{of}-canary",
        "annotations": {"com.aquatope.handler": str(handler)},
        "labels": {
            "com.aquatope.canary-of": of,
            "com.aquatope.canary-share": share,
            "com.openfaas.scale.min": "1",
            "com.openfaas.scale.max": "1",
        },
        "limits": {"cpu": "0.5", "memory": "192M"},
    }


def test_bad_canaries_are_refused_and_deploy_nothing(gateway, handler_dirs) -> None:
    _, admin, _ = gateway
    echo = handler_dirs["echo"]
    for body, code, words in (
        (_canary_body(echo, "echo", "1.5"), 400, "must be in (0, 1]"),
        (_canary_body(echo, "echo", "lots"), 400, "must be a number"),
        (_canary_body(echo, "echo", "0.1", name="other"), 400, "must be named 'echo-canary'"),
        (_canary_body(echo, "ghost", "0.1"), 409, "'ghost' is not deployed"),
    ):
        r = admin.post("/system/functions", json=body)
        assert r.status_code == code and words in r.text, r.text
    names = {f["name"] for f in admin.get("/system/functions").json()}
    assert not {n for n in names if n.endswith("-canary") or n == "other"}


def test_a_canary_serves_workflow_stages(gateway, handler_dirs) -> None:
    """Stages of a workflow call through the gateway, so a canary takes its share of them
    (share 1: every stage call that finds it free), at its own limits and counters."""
    _, admin, anon = gateway

    def count(name: str) -> int:
        return int(admin.get(f"/system/function/{name}").json()["invocationCount"])

    canary = _canary_body(handler_dirs["upper"], "upper", "1")
    assert admin.post("/system/functions", json=canary).status_code == 202
    try:
        wait_until(lambda: admin.get("/system/function/upper-canary").json()["availableReplicas"])
        before = count("upper")
        r = anon.post("/workflow/shout", json={"text": "hi"})
        assert r.status_code == 200 and r.json()["output"] == {"joined": ["left", "right"]}, r.text
        took = count("upper-canary")
        assert took >= 1  # the first stage finds it free; left and right run at once
        assert count("upper") - before + took == 3
        status = admin.get("/system/function/upper-canary").json()
        assert status["limits"]["memory"].startswith("192")
        assert admin.get("/system/function/upper").json()["limits"]["memory"].startswith("256")
    finally:
        r = admin.request("DELETE", "/system/functions", json={"functionName": "upper-canary"})
        assert r.status_code == 202, r.text


def test_removing_a_function_removes_its_canary(gateway, handler_dirs) -> None:
    _, admin, _ = gateway
    body = {
        "service": "shouter",
        "annotations": {"com.aquatope.handler": str(handler_dirs["echo"])},
    }
    assert admin.post("/system/functions", json=body).status_code == 202
    canary = _canary_body(handler_dirs["echo"], "shouter", "0.5")
    assert admin.post("/system/functions", json=canary).status_code == 202
    r = admin.request("DELETE", "/system/functions", json={"functionName": "shouter"})
    assert r.status_code == 202, r.text
    assert admin.get("/system/function/shouter-canary").status_code == 404


def test_unknown_function_is_404_everywhere(gateway) -> None:
    _, admin, anon = gateway
    assert admin.get("/system/function/ghost").status_code == 404
    assert admin.post("/system/scale-function/ghost", json={"replicas": 1}).status_code == 404
    assert (
        admin.request("DELETE", "/system/functions", json={"functionName": "ghost"}).status_code
        == 404
    )
    assert anon.post("/function/ghost", content=b"x").status_code == 404
    assert anon.post("/async-function/ghost", content=b"x").status_code == 404
    assert anon.post("/workflow/ghost", content=b"x").status_code == 404


def test_bad_scale_bodies(gateway) -> None:
    _, admin, _ = gateway
    r = admin.post("/system/scale-function/echo", json={"replicas": -1})
    assert r.status_code == 400 and "replicas" in r.text


def test_scale_path_names_the_function(gateway) -> None:
    """OpenFaaS documents 200/202/404/500 for scale: a differing serviceName is not a 400."""
    _, admin, _ = gateway
    r = admin.post("/system/scale-function/echo", json={"serviceName": "other", "replicas": 2})
    assert r.status_code == 202
    assert admin.get("/system/function/echo").json()["replicas"] == 2
    admin.post("/system/scale-function/echo", json={"serviceName": "echo", "replicas": 1})


def test_listing_has_created_at_and_namespaces(gateway) -> None:
    from datetime import datetime

    _, admin, _ = gateway
    listed = {f["name"]: f for f in admin.get("/system/functions").json()}
    created = datetime.fromisoformat(listed["echo"]["createdAt"].replace("Z", "+00:00"))
    assert abs(created.timestamp() - time.time()) < 3600
    assert admin.get("/system/function/echo").json()["createdAt"] == listed["echo"]["createdAt"]
    assert admin.get("/system/namespaces").json() == ["openfaas-fn"]
    assert admin.get("/system/info").json()["provider"]["provider"] == "aquatope-testbed"


def test_cold_then_warm_invocation_with_path_and_query(gateway) -> None:
    platform, admin, anon = gateway
    admin.post("/system/scale-function/echo", json={"serviceName": "echo", "replicas": 0})
    wait_until(lambda: platform.status("echo").replicas_ready == 0)
    first = anon.post("/function/echo/some/path?x=1&y=two", content=b"hello")
    assert first.status_code == 200
    assert first.headers["X-Cold-Start"] == "true"
    data = first.json()
    assert data == {
        "pid": data["pid"],
        "path": "/some/path",
        "query": {"x": "1", "y": "two"},
        "body": "hello",
    }
    second = anon.post("/function/echo", content=b"again")
    assert second.headers["X-Cold-Start"] == "false"
    assert float(second.headers["X-Duration-Seconds"]) >= 0


def test_scale_up_and_down(gateway) -> None:
    platform, admin, _ = gateway
    r = admin.post("/system/scale-function/echo", json={"serviceName": "echo", "replicas": 3})
    assert r.status_code == 202
    wait_until(lambda: admin.get("/system/function/echo").json()["availableReplicas"] == 3)
    # above the scale.max label (4) is clamped
    admin.post("/system/scale-function/echo", json={"serviceName": "echo", "replicas": 9})
    assert admin.get("/system/function/echo").json()["replicas"] == 4
    admin.post("/system/scale-function/echo", json={"serviceName": "echo", "replicas": 1})
    wait_until(lambda: platform.status("echo").replicas_ready == 1)


def test_requests_spread_over_replicas(gateway) -> None:
    platform, admin, anon = gateway
    admin.post("/system/scale-function/echo", json={"serviceName": "echo", "replicas": 2})
    wait_until(lambda: platform.status("echo").replicas_ready == 2)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        pids = set(
            pool.map(lambda _: anon.post("/function/echo", content=b"x").json()["pid"], range(40))
        )
    assert len(pids) == 2


class _Callback(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Callback.received.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_async_function_calls_back(gateway) -> None:
    _, _, anon = gateway
    _Callback.received.clear()  # a class attribute: it outlives a pytest session (mutmut runs two)
    server = HTTPServer(("127.0.0.1", 0), _Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/done"
        r = anon.post("/async-function/echo", content=b"later", headers={"X-Callback-Url": url})
        assert r.status_code == 202 and r.headers["X-Call-Id"]
        wait_until(lambda: _Callback.received)
        headers, body = _Callback.received[0]
        assert headers["X-Call-Id"] == r.headers["X-Call-Id"]
        assert headers["X-Function-Status"] == "200"
        assert json.loads(body)["body"] == "later"
    finally:
        server.shutdown()


def test_async_callback_must_be_loopback(gateway) -> None:
    _, _, anon = gateway
    r = anon.post("/async-function/echo", headers={"X-Callback-Url": "http://example.com/x"})
    assert r.status_code == 400 and "loopback" in r.text


def test_workflow_runs_dag_with_fan_out_and_join(gateway) -> None:
    _, _, anon = gateway
    r = anon.post("/workflow/shout", json={"text": "hi"})
    assert r.status_code == 200, r.text
    data = r.json()
    # join gets {"left": ..., "right": ...}; the joiner answers with the sorted keys
    assert data["output"] == {"joined": ["left", "right"]}
    stages = {s["stage"]: s for s in data["stages"]}
    assert list(stages) == ["first", "left", "right", "join"]
    assert stages["left"]["start_s"] >= stages["first"]["end_s"]
    assert stages["join"]["start_s"] >= max(stages["left"]["end_s"], stages["right"]["end_s"])
    assert all(s["status"] == 200 for s in data["stages"])
    assert r.headers["X-Cold-Start"] in ("true", "false")
    assert data["cold_stages"] == sum(s["cold_start"] for s in data["stages"])
    # the replica's own handler time, inside the gateway's view of the stage
    for s in data["stages"]:
        assert 0 < s["handler_s"] <= s["duration_s"], s


def test_workflow_stage_failure_is_reported(gateway) -> None:
    _, _, anon = gateway
    r = anon.post("/workflow/shout", content=b"{broken")
    assert r.status_code == 500
    assert "stage 'first' failed" in r.json()["error"]


def test_workflow_latency_is_exported_end_to_end(gateway) -> None:
    platform, _, anon = gateway
    before = platform.metrics().workflows.get("shout", WorkflowMetrics())
    started = time.perf_counter()
    assert anon.post("/workflow/shout", json={"text": "hi"}).status_code == 200
    client_s = time.perf_counter() - started
    assert anon.post("/workflow/shout", content=b"{broken").status_code == 500
    assert "gateway_workflow_seconds_bucket" in anon.get("/metrics").text
    after = platform.metrics().workflows["shout"]
    assert (after.completed - before.completed, after.errors - before.errors) == (2, 1)
    new = latencies_between(before.latency_counts or None, after.latency_counts)
    assert len(new) == 2 and new[-1] == math.inf  # the failed one met no target
    assert 0.0 < new[0] <= client_s * 1.025  # the gateway's share of what the client saw


def test_replicas_report_their_peak_memory(gateway) -> None:
    platform, _, anon = gateway
    assert anon.post("/function/echo", content=b"m").status_code == 200
    ready = [r for r in platform.status("echo").replicas if r.state == "ready"]
    # a Python replica holds at least its interpreter: several MB, far below a GB
    assert ready and all(5.0 < (r.peak_memory_mb or 0.0) < 1024.0 for r in ready)


def test_metrics_use_openfaas_names_and_count(gateway) -> None:
    platform, _, anon = gateway
    before = platform.metrics().functions["echo"].completed
    for _ in range(3):
        anon.post("/function/echo", content=b"m")
    text = anon.get("/metrics").text
    for name in (
        "gateway_function_invocation_total",
        "gateway_functions_seconds_bucket",
        "gateway_service_count",
        "gateway_function_cold_starts_total",
    ):
        assert name in text
    assert 'gateway_function_invocation_total{code="200",function_name="echo"}' in text
    assert platform.metrics().functions["echo"].completed == before + 3


def test_delete_removes_function_and_replicas(gateway, handler_dirs) -> None:
    _, admin, anon = gateway
    body = {"service": "doomed", "annotations": {"com.aquatope.handler": str(handler_dirs["echo"])}}
    assert admin.post("/system/functions", json=body).status_code == 202
    pid = anon.post("/function/doomed", content=b"x").json()["pid"]
    r = admin.request("DELETE", "/system/functions", json={"functionName": "doomed"})
    assert r.status_code == 202
    assert admin.get("/system/function/doomed").status_code == 404
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_broken_handler_fails_fast_with_503(gateway, handler_dirs) -> None:
    _, admin, anon = gateway
    body = {
        "service": "broken",
        "annotations": {"com.aquatope.handler": str(handler_dirs["broken"])},
    }
    assert admin.post("/system/functions", json=body).status_code == 202
    start = time.monotonic()
    r = anon.post("/function/broken", content=b"x")
    assert r.status_code == 503
    assert "this handler fails at import" in r.text
    assert time.monotonic() - start < 20


def test_client_falls_back_to_redeploy_without_the_live_limits_route(gateway) -> None:
    """Against a gateway without /system/limits (a real OpenFaaS), limits go through PUT."""
    import base64

    import httpx as _httpx

    from testbed.backends.openfaas import OpenFaaSPlatform
    from testbed.core.config import Limits
    from testbed.core.errors import FunctionNotFound

    platform, admin, _ = gateway
    header = (
        admin.build_request("GET", "/").headers.get("Authorization")
        or next(admin.auth.auth_flow(admin.build_request("GET", "/"))).headers["Authorization"]
    )
    password = base64.b64decode(header.split()[1]).decode().partition(":")[2]
    real = OpenFaaSPlatform(platform.url, password=password)

    def hide_limits_route(request: _httpx.Request) -> None:
        if request.url.path.startswith("/system/limits/"):
            request.url = request.url.copy_with(path="/system/no-such-route")

    real._client.event_hooks["request"] = [hide_limits_route]
    try:
        real.set_limits("echo", Limits(cpu_cores=0.75, memory_mb=200))
        assert real.status("echo").limits == Limits(cpu_cores=0.75, memory_mb=200)
        with pytest.raises(FunctionNotFound):
            real.set_limits("ghost", Limits(cpu_cores=1))
    finally:
        real.close()
