"""Hostile and malformed input against a real gateway: always a 4xx with a message, never a 500.

Each test here failed on the gateway before issue 16 (a 500, a silent 202 or a redirect
followed); they run against a real local gateway process over loopback.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.host import usable_cores
from testbed.gateway.launch import start_gateway
from testbed.gateway.models import machine_memory_mb
from testbed.gateway.runtimes.cgroups import detect
from tests.helpers import wait_until

needs_cgroups = pytest.mark.skipif(
    detect("aquatope-probe") is None, reason="no writable cgroup hierarchy on this host"
)

HOLD_HANDLER = """
import os

HELD = []

def handle(event, context):
    mb = int(event.body or b"0")
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    HELD.append(block)
    return {"statusCode": 200, "body": {"pid": os.getpid(), "held_mb": mb}}
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, handler_dirs: dict[str, Path]
) -> Iterator[tuple[OpenFaaSPlatform, httpx.Client, httpx.Client, Path]]:
    home = tmp_path_factory.mktemp("home")
    hold = tmp_path_factory.mktemp("hold")
    (hold / "handler.py").write_text(HOLD_HANDLER)
    process = start_gateway(
        state_dir=home, extra_args=["--max-body-mb", "1", "--max-async-pending", "2"]
    )
    from testbed.gateway.auth import ensure_password

    password = ensure_password(home)
    platform = OpenFaaSPlatform(process.url, password=password)
    platform.own(process)
    admin = httpx.Client(base_url=process.url, auth=("admin", password), timeout=60)
    anon = httpx.Client(base_url=process.url, timeout=60)
    for name, handler in (("echo", handler_dirs["echo"]), ("hold", hold)):
        r = admin.post(
            "/system/functions",
            json={
                "service": name,
                "annotations": {"com.aquatope.handler": str(handler)},
                "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "2"},
                "limits": {"cpu": "1", "memory": "256M"},
            },
        )
        assert r.status_code == 202, r.text
    try:
        yield platform, admin, anon, home
    finally:
        admin.close()
        anon.close()
        platform.close()


def _deploy_body(handler: Path, **extra: object) -> dict[str, object]:
    return {"service": "probe", "annotations": {"com.aquatope.handler": str(handler)}, **extra}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "header",
    [
        _basic("admín", "x"),
        _basic("admin", "pässword"),
        "Basic " + base64.b64encode(b"\xff\xfe:\x80").decode(),
        "Basic ÿÿÿÿ",
    ],
)
def test_non_ascii_basic_auth_is_401(gateway, header: str) -> None:
    _, _, anon, _ = gateway
    r = anon.get("/system/functions", headers={"Authorization": header.encode("utf-8")})
    assert r.status_code == 401, r.text


def test_deeply_nested_json_bodies_are_400(gateway, handler_dirs) -> None:
    _, admin, _, _ = gateway
    deep = b"[" * 100_000
    for method, path in (
        ("POST", "/system/functions"),
        ("PUT", "/system/functions"),
        ("DELETE", "/system/functions"),
        ("POST", "/system/scale-function/echo"),
        ("POST", "/system/limits/echo"),
    ):
        r = admin.request(method, path, content=deep)
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert "nested too deeply" in r.text


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        ({"memory": "9" * 400}, "memory"),
        ({"memory": "9" * 400 + "Gi"}, "memory"),
        ({"cpu": "inf"}, "finite"),
        ({"cpu": "1e400"}, "cpu"),
        ({"cpu": "nan"}, "cpu"),
        ({"cpu": "-inf"}, "cpu"),
        ({"cpu": "1e-6"}, "cpu"),
        ({"cpu": "1e6"}, "cores"),
        ({"cpu": True}, "cpu"),
        ({"memory": True}, "memory"),
        ({"memory": "999999G"}, "MiB"),
        ({"memory": "1Mi"}, "floor"),
        ({"memory": 10**30}, "memory"),
    ],
)
def test_out_of_bounds_limits_are_400_on_deploy_and_live(gateway, handler_dirs, limits, needle):
    platform, admin, _, _ = gateway
    r = admin.post("/system/functions", json=_deploy_body(handler_dirs["echo"], limits=limits))
    assert r.status_code == 400, r.text
    assert needle in r.text
    r = admin.post("/system/limits/echo", json=limits)
    assert r.status_code == 400, r.text
    status = platform.status("echo")
    assert status.limits.cpu_cores == 1.0 and status.limits.memory_mb == 256


def test_limits_within_the_machine_are_accepted(gateway) -> None:
    platform, admin, _, _ = gateway
    cores, memory_mb = usable_cores(), machine_memory_mb()
    r = admin.post("/system/limits/echo", json={"cpu": str(cores), "memory": f"{memory_mb}Mi"})
    assert r.status_code == 202, r.text
    r = admin.post("/system/limits/echo", json={"cpu": "1", "memory": "256Mi"})
    assert r.status_code == 202, r.text
    assert platform.status("echo").limits.cpu_cores == 1.0


@needs_cgroups
def test_memory_limit_below_usage_is_409_and_keeps_the_old_limit(gateway) -> None:
    platform, admin, anon, _ = gateway
    r = anon.post("/function/hold", content=b"120")
    assert r.status_code == 200, r.text
    r = admin.post("/system/limits/hold", json={"cpu": "0.5", "memory": "32Mi"})
    assert r.status_code == 409, r.text
    assert "32" in r.text and "usage" in r.text
    status = platform.status("hold")
    assert status.limits.memory_mb == 256 and status.limits.cpu_cores == 1.0
    pid = anon.post("/function/hold", content=b"0").json()["pid"]
    cgroup = _memory_cgroup(pid)
    assert int((cgroup / "memory.limit_in_bytes").read_text()) == 256 * 2**20
    cpu = _cpu_cgroup(pid)
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 100_000


def _memory_cgroup(pid: int) -> Path:
    return _v1_cgroup(pid, "memory")


def _cpu_cgroup(pid: int) -> Path:
    return _v1_cgroup(pid, "cpu")


def _v1_cgroup(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    pytest.skip("cgroup v1 layout needed for this check")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BAD": "nul\x00byte"}, "envVars.BAD: the value holds a NUL byte"),
        ({"A=B": "x"}, "not a variable name"),
        ({"": "x"}, "not a variable name"),
    ],
)
def test_environment_no_process_can_get_is_400_on_deploy(gateway, handler_dirs, env, needle):
    """Accepted, it would fail every replica start of the function (execve refuses it)."""
    _, admin, _, _ = gateway
    r = admin.post("/system/functions", json=_deploy_body(handler_dirs["echo"], envVars=env))
    assert r.status_code == 400, r.text
    assert needle in r.text


def test_scale_max_above_the_platform_cap_is_400(gateway, handler_dirs) -> None:
    _, admin, _, _ = gateway
    body = _deploy_body(
        handler_dirs["echo"],
        labels={"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "2000"},
    )
    r = admin.post("/system/functions", json=body)
    assert r.status_code == 400 and "platform cap" in r.text


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.hits.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/start":
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_async_callbacks_do_not_follow_redirects(gateway) -> None:
    _, _, anon, _ = gateway
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        r = anon.post(
            "/async-function/echo", content=b"x", headers={"X-Callback-Url": base + "/start"}
        )
        assert r.status_code == 202
        wait_until(lambda: _Recorder.hits)
        # a second call proves the first callback finished; the redirect target saw nothing
        r = anon.post(
            "/async-function/echo", content=b"y", headers={"X-Callback-Url": base + "/last"}
        )
        wait_until(lambda: "/last" in _Recorder.hits)
        assert "/elsewhere" not in _Recorder.hits
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/x",
        "http://127.0.0.1:99999/x",
        "http://[::1/x",
        "javascript:alert(1)",
    ],
)
def test_async_callbacks_need_http_on_loopback(gateway, url: str) -> None:
    _, _, anon, _ = gateway
    r = anon.post("/async-function/echo", content=b"x", headers={"X-Callback-Url": url})
    assert r.status_code == 400, r.text
    assert "X-Callback-Url" in r.text


def test_body_size_is_capped_by_the_configured_limit(gateway) -> None:
    _, _, anon, _ = gateway
    r = anon.post("/function/echo", content=b"x" * (2 * 2**20))
    assert r.status_code == 413
    assert anon.post("/function/echo", content=b"x" * 1000).status_code == 200


def test_replica_internals_are_not_exposed(gateway) -> None:
    _, _, anon, _ = gateway
    for path in ("/function/echo/_/health", "/function/echo/_", "/function/echo/_/ready"):
        r = anon.get(path)
        assert r.status_code == 404, (path, r.text)
    assert anon.get("/function/echo/x_/health").status_code == 200


FUZZ_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'"x"',
    b"1e999",
    b"-0",
    b"\xff\xfe\x00",
    b"[" * 50_000,
    b'{"a":' * 20_000,
    json.dumps({"service": "x" * 10_000}).encode(),
    json.dumps({"service": "fz", "envVars": {"max_inflight": "1e9"}}).encode(),
    json.dumps({"service": "fz", "envVars": {"max_inflight": "0"}}).encode(),
    json.dumps({"service": "fz", "labels": {"com.openfaas.scale.max": "9" * 5000}}).encode(),
    json.dumps({"service": "fz", "limits": []}).encode(),
    json.dumps({"service": "fz", "limits": {"cpu": None, "memory": {}}}).encode(),
    json.dumps({"service": "fz", "requests": {"cpu": "inf"}}).encode(),
    json.dumps({"replicas": 10**30}).encode(),
    json.dumps({"replicas": "2"}).encode(),
    json.dumps({"replicas": 1.5}).encode(),
    json.dumps({"functionName": ["echo"]}).encode(),
    json.dumps({"cpu": "0.5", "memory": "128M", "extra": 1}).encode(),
]
FUZZ_ROUTES = [
    ("POST", "/system/functions"),
    ("PUT", "/system/functions"),
    ("DELETE", "/system/functions"),
    ("POST", "/system/scale-function/echo"),
    ("POST", "/system/scale-function/%00"),
    ("POST", "/system/limits/echo"),
    ("GET", "/system/function/..%2f"),
    ("POST", "/function/ghost"),
    ("POST", "/async-function/ghost"),
    ("POST", "/workflow/ghost"),
    ("PATCH", "/system/functions"),
]


def test_no_route_answers_a_5xx_to_malformed_input(gateway) -> None:
    """A small fuzz over every management route: 4xx with a message, never a 5xx."""
    _, admin, _, _ = gateway
    seen: list[tuple[str, str, int]] = []
    for method, path in FUZZ_ROUTES:
        for body in FUZZ_BODIES:
            r = admin.request(method, path, content=body)
            seen.append((method, path, r.status_code))
            assert r.status_code < 500, (method, path, body[:60], r.status_code, r.text)
            if r.status_code >= 400:
                assert r.text.strip(), (method, path, body[:60])
    assert any(code == 400 for _, _, code in seen)
    assert admin.get("/system/function/echo").status_code == 200
    admin.post("/system/scale-function/echo", json={"replicas": 1})


def test_async_queue_is_bounded_with_429(gateway, handler_dirs) -> None:
    platform, admin, anon, _ = gateway
    r = admin.post(
        "/system/functions",
        json={
            "service": "slowburn",
            "annotations": {"com.aquatope.handler": str(handler_dirs["burn"])},
            "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "1"},
        },
    )
    assert r.status_code == 202, r.text
    wait_until(lambda: platform.status("slowburn").replicas_ready == 1, timeout_s=60)
    codes = [
        anon.post("/async-function/slowburn", json={"n": 400_000}) for _ in range(4)
    ]  # the gateway was started with --max-async-pending 2
    assert [r.status_code for r in codes[:2]] == [202, 202]
    refused = [r for r in codes[2:] if r.status_code == 429]
    assert refused, [r.status_code for r in codes]
    assert refused[0].headers["Retry-After"] and "async queue full" in refused[0].text
    # the queue drains and accepts again
    wait_until(
        lambda: anon.post("/async-function/slowburn", json={"n": 1}).status_code == 202,
        timeout_s=60,
    )


def test_replicas_that_cannot_start_get_503_retry_after_without_a_log_flood(
    gateway, handler_dirs
) -> None:
    _, admin, anon, home = gateway
    r = admin.post(
        "/system/functions",
        json={
            "service": "kaputt",
            "annotations": {"com.aquatope.handler": str(handler_dirs["broken"])},
            "labels": {"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "50"},
        },
    )
    assert r.status_code == 202
    answers = [anon.post("/function/kaputt", content=b"x") for _ in range(20)]
    assert {a.status_code for a in answers} == {503}
    assert all(a.headers.get("Retry-After") for a in answers)
    assert "this handler fails at import" in answers[0].text
    r = admin.post("/system/scale-function/kaputt", json={"replicas": 50})
    assert r.status_code == 202
    log = (home / "logs" / "gateway-local.log").read_text()
    failures = log.count("kaputt: replica start failed")
    assert 1 <= failures <= 3, failures
    assert "Traceback" not in log
    admin.request("DELETE", "/system/functions", json={"functionName": "kaputt"})


ENV_HANDLER = """
import os

def handle(event, context):
    return {"statusCode": 200, "body": sorted(os.environ)}
"""


def test_replicas_do_not_see_the_gateway_home_or_passwords(gateway, tmp_path) -> None:
    _, admin, anon, _ = gateway
    (tmp_path / "handler.py").write_text(ENV_HANDLER)
    r = admin.post(
        "/system/functions",
        json={"service": "envdump", "annotations": {"com.aquatope.handler": str(tmp_path)}},
    )
    assert r.status_code == 202
    names = anon.post("/function/envdump", content=b"").json()
    assert "AQUATOPE_FUNCTION" in names
    assert not [n for n in names if n in ("AQUATOPE_HOME", "OPENFAAS_PASSWORD", "OPENFAAS_URL")]
