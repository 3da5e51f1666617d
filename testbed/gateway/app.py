"""The OpenFaaS-compatible HTTP API (aiohttp), and the gateway process entry point.

Routes (DESIGN.md §6): ``/healthz``, ``/system/info``, ``/system/functions`` (GET, POST, PUT,
DELETE), ``/system/function/{name}``, ``/system/scale-function/{name}``,
``/function/{name}[/path]``, ``/async-function/{name}``, ``/workflow/{name}``, ``/metrics``.
``/system/*`` needs basic auth (user ``admin``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import platform
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from testbed.core.config import (
    DEFAULT_MAX_ASYNC_PENDING,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_REPLICAS,
    GatewayConfig,
)
from testbed.core.errors import (
    ConfigError,
    DeployError,
    FunctionNotFound,
    PlatformError,
    TestbedError,
)
from testbed.gateway.auth import check_basic_auth, ensure_password
from testbed.gateway.core import Gateway
from testbed.gateway.metrics import GatewayCollector, render_metrics
from testbed.gateway.models import (
    NAMESPACE,
    parse_delete,
    parse_deploy,
    parse_limits,
    parse_scale,
    status_json,
)
from testbed.gateway.openapi import openapi_document
from testbed.gateway.runtimes import create_runtime

__all__ = ["build_app", "main", "serve"]

log = logging.getLogger("aquatope.gateway")

GATEWAY_KEY = web.AppKey("gateway", Gateway)
VERSION = "0.1.0"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


def _error(status: int, message: str, *, retry_after_s: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return web.Response(
        text=message + "\n", status=status, content_type="text/plain", headers=headers
    )


async def _body_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"body: invalid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError("body: JSON nested too deeply") from None


RETRY_AFTER_S = 5
ASYNC_QUEUE_BYTES = 256 * 2**20
"""Bodies held by queued ``/async-function`` calls before new ones get 429."""
"""What a 503 from the gateway tells the client to wait before trying again."""

_ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ConfigError, 400),
    (FunctionNotFound, 404),
    (DeployError, 409),
    (PlatformError, 503),
)
"""Testbed errors escaping a route, most specific first (registry, not an if-ladder)."""


def _error_response(exc: Exception) -> web.Response:
    for kind, status in _ERROR_STATUS:
        if isinstance(exc, kind):
            return _error(status, str(exc), retry_after_s=RETRY_AFTER_S if status == 503 else None)
    raise exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(handler: Handler, *, password: str | None = None) -> Handler:
    """``handler`` with the gateway's error rules, and basic auth (user admin) when ``password``.

    Testbed errors become 4xx/503; anything else a logged 500 whose JSON body carries a request
    id that is also in the log line with the traceback (the client never sees the traceback).
    A wrapper per route rather than an aiohttp middleware: a middleware chain would cost every
    invocation an extra frame and aiohttp's current-app context manager.
    """

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            if password is not None and not check_basic_auth(
                request.headers.get("Authorization"), password
            ):
                return web.Response(
                    status=401,
                    text="Unauthorized: /system/* needs basic auth (user admin)\n",
                    headers={"WWW-Authenticate": 'Basic realm="aquatope"'},
                )
            return await handler(request)
        except web.HTTPException:
            raise  # aiohttp's own 4xx (no route, method, body too large) carry a message
        except asyncio.CancelledError:
            raise
        except TestbedError as exc:
            return _error_response(exc)
        except Exception:
            request_id = uuid.uuid4().hex
            log.exception(
                "internal error %s on %s %s", request_id, request.method, request.path[:200]
            )
            return _json({"error": "internal error", "request_id": request_id}, status=500)

    return guarded


def build_app(
    gateway: Gateway, *, password: str, functions_dir: Path | None, provider: bool = False
) -> web.Application:
    """The aiohttp application serving ``gateway``.

    Every ``/system/*`` route needs basic auth; every route maps errors as :func:`_guarded`.

    Args:
        provider: serve as the faas-provider behind a real OpenFaaS gateway (``/system/info``
            answers the provider's own ``ProviderInfo`` instead of the gateway's info).
    """
    app = web.Application(client_max_size=gateway.config.max_body_mb * 2**20)
    app[GATEWAY_KEY] = gateway
    routes = _Routes(gateway, functions_dir=functions_dir, provider=provider)

    def route(method: str, path: str, handler: Handler) -> None:
        guarded = _guarded(handler, password=password if path.startswith("/system/") else None)
        if method == "GET":
            app.router.add_get(path, guarded)  # HEAD too, as aiohttp's add_get does
        else:
            app.router.add_route(method, path, guarded)

    route("GET", "/healthz", routes.healthz)
    route("GET", "/system/info", routes.info)
    route("GET", "/system/functions", routes.list_functions)
    route("GET", "/system/namespaces", routes.namespaces)
    route("POST", "/system/functions", routes.deploy)
    route("PUT", "/system/functions", routes.deploy)
    route("DELETE", "/system/functions", routes.delete)
    route("GET", "/system/function/{name}", routes.function_status)
    route("POST", "/system/scale-function/{name}", routes.scale)
    route("POST", "/system/limits/{name}", routes.limits)
    route("GET", "/system/workflows", routes.workflows)
    route("GET", "/system/openapi.json", routes.openapi)
    route("*", "/function/{name}", routes.invoke)
    route("*", "/function/{name}/{tail:.*}", routes.invoke)
    route("POST", "/async-function/{name}", routes.invoke_async)
    route("POST", "/workflow/{name}", routes.workflow)
    route("GET", "/metrics", routes.metrics)
    return app


class _Routes:
    """The handlers of every route, sharing the gateway and the async-call bookkeeping."""

    def __init__(self, gateway: Gateway, *, functions_dir: Path | None, provider: bool) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.functions_dir = functions_dir
        self.provider = provider
        self.collector = GatewayCollector(
            lambda: gateway.pools,
            lambda: gateway.workflow_counts,
            lambda: gateway.workflow_latency,
        )
        self.background: set[asyncio.Task[Any]] = set()
        self.pending_bytes = [0]  # bodies held by queued async calls
        self.woken: set[str] = set()  # provider mode: functions just scaled from zero

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def info(self, request: web.Request) -> web.Response:
        if self.provider:
            return _json(
                {
                    "provider": "aquatope-testbed",
                    "orchestration": self.gateway.runtime.name,
                    "version": {"release": VERSION, "sha": ""},
                }
            )
        return _json(
            {
                "provider": {
                    "provider": "aquatope-testbed",
                    "orchestration": self.gateway.runtime.name,
                    "version": {"release": VERSION, "sha": ""},
                },
                "version": {"release": VERSION, "sha": "", "commit_message": ""},
                "arch": platform.machine(),
            }
        )

    async def list_functions(self, request: web.Request) -> web.Response:
        return _json([self._status(name) for name in sorted(self.gateway.pools)])

    def _status(self, name: str) -> dict[str, Any]:
        created = self.gateway.created_at_s.get(name)
        return status_json(self.gateway.status(name), created_at_s=created)

    async def namespaces(self, request: web.Request) -> web.Response:
        return _json([NAMESPACE])

    async def deploy(self, request: web.Request) -> web.Response:
        spec = parse_deploy(
            await _body_json(request),
            functions_dir=self.functions_dir,
            max_replicas=self.config.max_replicas,
        )
        await self.gateway.deploy(spec, update=request.method == "PUT")
        return web.Response(status=202)

    async def delete(self, request: web.Request) -> web.Response:
        await self.gateway.remove(parse_delete(await _body_json(request)))
        return web.Response(status=202)

    async def function_status(self, request: web.Request) -> web.Response:
        return _json(self._status(request.match_info["name"]))

    async def scale(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        replicas = parse_scale(await _body_json(request), name)
        if self.provider and replicas > 0 and not self.gateway.status(name).replicas:
            # A real OpenFaaS self.gateway scales from zero and waits before it forwards, so the
            # request reaches us warm: remember that the next one was a cold start.
            self.woken.add(name)
        self.gateway.scale(name, replicas)
        return web.Response(status=202)

    async def limits(self, request: web.Request) -> web.Response:
        """Testbed extension: ``{"cpu": "0.5", "memory": "256Mi"}`` applied live."""
        name = request.match_info["name"]
        body = await _body_json(request)
        await self.gateway.set_limits(name, parse_limits(body, where="body"))
        return web.Response(status=202)

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tail = request.match_info.get("tail", "")
        if tail == "_" or tail.startswith("_/"):
            # the runner's own endpoints (health, startup report) stay private
            return _error(404, f"/function/{name}/{tail[:100]}: not a function path")
        result = await self.gateway.call(
            name,
            await request.read(),
            method=request.method,
            path="/" + tail,
            query=request.query_string,
            headers=request.headers,
        )
        headers = dict(result.headers)
        cold = result.cold_start
        if name in self.woken:  # the first request served after a scale from zero waited for it
            self.woken.discard(name)
            cold = cold or result.status < 500
        headers["X-Cold-Start"] = "true" if cold else "false"
        headers["X-Duration-Seconds"] = f"{result.end_s - result.start_s:.6f}"
        headers["X-Start-Time"] = str(int(result.start_s * 1e9))
        if result.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_S)
        return web.Response(body=result.body, status=result.status, headers=headers)

    async def invoke_async(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.gateway.pool(name)  # 404 now rather than later
        callback = request.headers.get("X-Callback-Url")
        if callback:
            _check_callback(callback)
        full = len(self.background) >= self.config.max_async_pending or (
            self.pending_bytes[0] + (request.content_length or 0) > ASYNC_QUEUE_BYTES
        )
        if full:
            return _error(
                429,
                f"async queue full ({len(self.background)} calls, "
                f"{self.pending_bytes[0] >> 20} MiB pending; limits "
                f"{self.config.max_async_pending} calls, {ASYNC_QUEUE_BYTES >> 20} MiB); "
                "retry later",
                retry_after_s=RETRY_AFTER_S,
            )
        body = await request.read()
        self.pending_bytes[0] += len(body)
        call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())

        async def run() -> None:
            try:
                result = await self.gateway.call(name, body)
            finally:
                self.pending_bytes[0] -= len(body)
            if callback and self.gateway._session is not None:
                headers = {
                    "X-Call-Id": call_id,
                    "X-Function-Status": str(result.status),
                    "X-Function-Name": name,
                    "X-Cold-Start": "true" if result.cold_start else "false",
                }
                try:
                    # redirects are not followed: the loopback rule holds for the URL checked
                    async with self.gateway._session.post(
                        callback, data=result.body, headers=headers, allow_redirects=False
                    ) as resp:
                        if 300 <= resp.status < 400:
                            log.warning(
                                "callback for %s answered %d; redirects are not followed",
                                call_id,
                                resp.status,
                            )
                except Exception as exc:
                    log.warning("callback for %s failed: %s", call_id, exc)

        task = asyncio.get_running_loop().create_task(run())
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    async def workflow(self, request: web.Request) -> web.Response:
        status, response = await self.gateway.run_workflow(
            request.match_info["name"], await request.read()
        )
        headers = {
            "X-Cold-Start": "true" if response.get("cold_start") else "false",
            "X-Duration-Seconds": f"{response.get('duration_s', 0.0):.6f}",
        }
        return web.Response(
            body=json.dumps(response).encode(),
            status=status,
            headers=headers,
            content_type="application/json",
        )

    async def workflows(self, request: web.Request) -> web.Response:
        return _json(
            [
                {
                    "name": w.name,
                    "description": w.description,
                    "qos": {"target_s": w.qos.target_s, "percentile": w.qos.percentile},
                    "stages": [
                        {"name": s.name, "function": s.function, "after": list(s.after)}
                        for s in w.stages
                    ],
                }
                for w in self.gateway.workflows.values()
            ]
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document(version=VERSION))

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=render_metrics(self.collector),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


def _check_callback(url: str) -> None:
    """Callbacks go to http(s) on loopback only: the gateway must not be a proxy to other hosts.

    Raises:
        ConfigError: another scheme, another host, or a URL that does not parse.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("X-Callback-Url: not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"X-Callback-Url: only http and https callbacks are allowed, got {parts.scheme[:20]!r}"
        )
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"X-Callback-Url: only loopback callbacks are allowed, got {host[:100]!r}"
        )


async def serve(
    config: GatewayConfig,
    *,
    announce: Callable[[str], None] | None = None,
    provider: bool = False,
) -> None:
    """Run a gateway until SIGTERM/SIGINT; replicas are stopped on the way out."""
    from testbed.core.workflows import load_workflows

    password = ensure_password(config.state_dir)
    catalog = load_workflows(config.workflows_dir)
    runtime = create_runtime(config.backend, config.state_dir)
    gateway = Gateway(config, runtime, catalog.workflows)
    await gateway.start()
    await gateway.restore()
    functions_dir = config.workflows_dir.parent if config.workflows_dir else None
    if functions_dir is None:
        from testbed.core.workflows import default_workflows_dir

        functions_dir = default_workflows_dir().parent
    app = build_app(gateway, password=password, functions_dir=functions_dir, provider=provider)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{config.host}:{port}"
        if announce:
            announce(url)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await gateway.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.gateway``: run a gateway in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m testbed.gateway")
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--workflows-dir", default=None)
    parser.add_argument("--cold-start-timeout", type=float, default=60.0)
    parser.add_argument(
        "--provider", action="store_true", help="serve as the provider of an OpenFaaS gateway"
    )
    parser.add_argument(
        "--max-body-mb",
        type=int,
        default=DEFAULT_MAX_BODY_MB,
        help=f"largest request body accepted, MiB (default {DEFAULT_MAX_BODY_MB})",
    )
    parser.add_argument(
        "--max-replicas",
        type=int,
        default=DEFAULT_MAX_REPLICAS,
        help=f"platform cap on com.openfaas.scale.max (default {DEFAULT_MAX_REPLICAS})",
    )
    parser.add_argument(
        "--max-async-pending",
        type=int,
        default=DEFAULT_MAX_ASYNC_PENDING,
        help=f"queued async calls before 429 (default {DEFAULT_MAX_ASYNC_PENDING})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from testbed.core.config import aquatope_home

    try:
        config = GatewayConfig(
            host=args.host,
            port=args.port,
            backend=args.backend,
            state_dir=Path(args.state_dir) if args.state_dir else aquatope_home(),
            workflows_dir=Path(args.workflows_dir) if args.workflows_dir else None,
            cold_start_timeout_s=args.cold_start_timeout,
            max_body_mb=args.max_body_mb,
            max_replicas=args.max_replicas,
            max_async_pending=args.max_async_pending,
        )
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2

    def announce(url: str) -> None:
        print(json.dumps({"event": "listening", "url": url, "pid": os.getpid()}), flush=True)
        log.info("gateway listening on %s (backend %s) at %s", url, config.backend, time.ctime())

    try:
        asyncio.run(serve(config, announce=announce, provider=args.provider))
    except PlatformError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
