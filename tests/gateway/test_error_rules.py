"""The gateway's error rules over real HTTP: an unexpected error is a logged 500 with an id."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from aiohttp import web

from testbed.core.errors import BackendUnavailable, DeployError
from testbed.gateway.app import _guarded


async def _serve_and_get(app: web.Application, path: str) -> httpx.Response:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            return await client.get(path)
    finally:
        await runner.cleanup()


def _app() -> web.Application:
    app = web.Application()

    async def boom(request: web.Request) -> web.Response:
        raise KeyError("a bug in the gateway")

    async def busy(request: web.Request) -> web.Response:
        raise BackendUnavailable("docker engine does not answer")

    async def refused(request: web.Request) -> web.Response:
        raise DeployError("kernel refused memory limit")

    app.router.add_get("/boom", _guarded(boom))
    app.router.add_get("/busy", _guarded(busy))
    app.router.add_get("/refused", _guarded(refused))
    app.router.add_get("/system/secret", _guarded(refused, password="secret"))
    return app


def test_unexpected_error_is_a_500_json_with_a_request_id_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="aquatope.gateway"):
        r = asyncio.run(_serve_and_get(_app(), "/boom"))
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "internal error" and len(body["request_id"]) == 32
    assert "Traceback" not in r.text and "KeyError" not in r.text
    logged = [rec for rec in caplog.records if body["request_id"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_platform_errors_are_503_with_retry_after_or_409() -> None:
    r = asyncio.run(_serve_and_get(_app(), "/busy"))
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert "docker engine" in r.text
    r = asyncio.run(_serve_and_get(_app(), "/refused"))
    assert r.status_code == 409 and "kernel refused" in r.text


def test_a_guarded_route_with_a_password_answers_401_before_its_handler_runs() -> None:
    r = asyncio.run(_serve_and_get(_app(), "/system/secret"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert "kernel refused" not in r.text
