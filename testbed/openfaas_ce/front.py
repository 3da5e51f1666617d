"""The workflow front of the OpenFaaS stack (ours): ``POST /workflow/{name}`` on the host's
loopback, each stage called through the real OpenFaaS gateway's ``/function/{name}``; every other
request is passed to that gateway unchanged.

The OpenFaaS gateway has no workflow route, and the experiment runner's load generator drives
workflows through ``/workflow/...``. With the front, every stage call crosses the real gateway,
so its metrics, Prometheus' rate and the CE alert autoscaler see each function's traffic.

Run: ``python -m testbed.openfaas_ce.front --upstream URL [--port 0]`` (prints one JSON line
``{"event": "listening", "url": ...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

from testbed.core.platform import Workflow
from testbed.gateway.core import CallResult
from testbed.gateway.dag import run_dag

__all__ = ["build_front", "main"]

_HOP_BY_HOP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
}
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


def build_front(upstream: str, workflows: Mapping[str, Workflow]) -> web.Application:
    """The front's application: workflows over ``upstream``'s ``/function``, the rest proxied.

    Args:
        upstream: the OpenFaaS gateway's base URL.
        workflows: the workflows served under ``/workflow/{name}``.
    """
    upstream = upstream.rstrip("/")
    app = web.Application(client_max_size=64 * 2**20)

    async def open_session(app: web.Application) -> None:
        app[SESSION_KEY] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=300),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close_session(app: web.Application) -> None:
        await app[SESSION_KEY].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)

    async def call(function: str, payload: bytes) -> CallResult:
        start = time.time()
        try:
            async with app[SESSION_KEY].post(f"{upstream}/function/{function}", data=payload) as r:
                out = await r.read()
                headers = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP}
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{function}: OpenFaaS gateway call failed: {type(exc).__name__} {exc}"
            body = json.dumps({"error": error}).encode()
            return CallResult(502, body, {}, False, start, time.time(), error)
        cold = headers.get("X-Cold-Start", "").lower() == "true"
        error = "" if status < 400 else out.decode(errors="replace")[:300]
        return CallResult(status, out, headers, cold, start, time.time(), error)

    async def workflow(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = workflows.get(name)
        if found is None:
            known = ", ".join(sorted(workflows)) or "none"
            body = {"error": f"workflow {name!r} not found (known: {known})"}
            return web.json_response(body, status=404)
        status, response = await run_dag(found, await request.read(), call)
        headers = {
            "X-Cold-Start": "true" if response.get("cold_start") else "false",
            "X-Duration-Seconds": f"{response.get('duration_s', 0.0):.6f}",
        }
        return web.json_response(response, status=status, headers=headers)

    async def proxy(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with app[SESSION_KEY].request(
                request.method,
                upstream + request.path_qs,
                data=await request.read(),
                headers=headers,
                allow_redirects=False,
            ) as r:
                body = await r.read()
                out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(body=body, status=r.status, headers=out)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.Response(
                status=502, text=f"OpenFaaS gateway at {upstream}: {type(exc).__name__} {exc}\n"
            )

    app.router.add_post("/workflow/{name}", workflow)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


async def _serve(args: argparse.Namespace) -> None:
    from testbed.core.workflows import load_workflows

    workflows_dir = Path(args.workflows_dir) if args.workflows_dir else None
    catalog = load_workflows(workflows_dir)
    runner = web.AppRunner(build_front(args.upstream, catalog.workflows), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await site.start()
        url = f"http://{args.host}:{runner.addresses[0][1]}"
        print(json.dumps({"event": "listening", "url": url, "pid": os.getpid()}), flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.openfaas_ce.front``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m testbed.openfaas_ce.front")
    parser.add_argument("--upstream", required=True, help="the OpenFaaS gateway's URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workflows-dir", default=None)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
