"""The function runner as a real process: handler calls, health, in-flight limit, bad handlers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testbed.runner.handler import Event, call_handler, load_handler


def _start(handler: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.runner", "--handler", str(handler), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    if line.get("event") != "ready":
        proc.kill()
        raise AssertionError(line)
    return proc, f"http://127.0.0.1:{line['port']}"


@pytest.fixture()
def slow_handler(tmp_path: Path) -> Path:
    (tmp_path / "handler.py").write_text(
        textwrap.dedent("""
        import threading
        gate = threading.Event()

        def handle(event, context):
            if event.path == "/open":
                gate.set()
                return {"statusCode": 200, "body": "opened"}
            if event.path == "/fail":
                raise ValueError("boom")
            gate.wait(2)
            return {"statusCode": 201, "body": {"ok": True}, "headers": {"X-Custom": "1"}}
    """)
    )
    return tmp_path


@pytest.fixture()
def runner(slow_handler: Path) -> Iterator[str]:
    proc, url = _start(slow_handler, "--max-inflight", "1", "--function", "slow")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


def test_health_reports_startup(runner: str) -> None:
    health = httpx.get(runner + "/_/health").json()
    assert health["status"] == "ok" and health["function"] == "slow"
    assert health["startup_s"] >= 0


def test_max_inflight_rejects_the_extra_request(runner: str) -> None:
    results: list[httpx.Response] = []
    first = threading.Thread(target=lambda: results.append(httpx.post(runner + "/", timeout=15)))
    first.start()
    # wait until the first request holds the only slot
    import time

    deadline = time.monotonic() + 5
    while httpx.get(runner + "/_/health").json()["inflight"] < 1:
        assert time.monotonic() < deadline
    extra = httpx.post(runner + "/", timeout=5)
    assert extra.status_code == 429
    # /open takes no slot either (limit reached) -> also 429; release the gate in-process
    assert httpx.post(runner + "/open").status_code == 429
    first.join(15)
    assert results and results[0].status_code == 201
    assert results[0].headers["X-Custom"] == "1"
    assert float(results[0].headers["X-Duration-Seconds"]) > 0


def test_handler_exception_is_a_500_and_runner_survives(runner: str) -> None:
    r = httpx.post(runner + "/fail")
    assert r.status_code == 500 and "boom" in r.json()["error"]
    assert httpx.get(runner + "/_/health").status_code == 200


def test_missing_handler_exits_with_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.runner", "--handler", str(tmp_path)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 3
    assert b"no handler module" in proc.stderr


def test_call_handler_normalises_return_values(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("def handle(event, context):\n    return event.json()\n")
    handle = load_handler(tmp_path)
    response = call_handler(handle, Event(body=b'{"a": 1}'))
    assert response.status_code == 200
    assert json.loads(response.body) == {"a": 1}
    assert response.headers["Content-Type"] == "application/json"
