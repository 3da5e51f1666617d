"""A minimal gateway look-alike that does no work: for calibrating the load generator.

``python -m loadgen.contrib.noop_gateway --port 0`` serves ``POST /workflow/{name}`` (a
one-stage workflow response with Unix stage times, as the real gateway returns) and
``POST /function/{name}`` (an empty 200), both with ``X-Cold-Start: false``, and
``GET /healthz``. It prints ``listening on http://HOST:PORT`` once it accepts connections.
``--delay-s`` holds every response that long (a slow system under test, for open-loop
checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

__all__ = ["build_app", "main"]


DELAY_KEY = web.AppKey("delay_s", float)


async def _workflow(request: web.Request) -> web.Response:
    start = time.time()
    await request.read()
    if request.app[DELAY_KEY] > 0:
        await asyncio.sleep(request.app[DELAY_KEY])
    end = time.time()
    name = request.match_info["name"]
    body = {
        "output": {},
        "cold_start": False,
        "stages": [
            {
                "stage": name,
                "function": name,
                "start_s": start,
                "end_s": end,
                "duration_s": end - start,
                "cold_start": False,
                "status": 200,
            }
        ],
    }
    return web.Response(
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"X-Cold-Start": "false"},
    )


async def _function(request: web.Request) -> web.Response:
    await request.read()
    if request.app[DELAY_KEY] > 0:
        await asyncio.sleep(request.app[DELAY_KEY])
    return web.Response(
        body=b"{}", content_type="application/json", headers={"X-Cold-Start": "false"}
    )


async def _health(_: web.Request) -> web.Response:
    return web.Response(text="OK")


def build_app(delay_s: float = 0.0) -> web.Application:
    """The aiohttp application; every response waits ``delay_s`` seconds."""
    app = web.Application()
    app[DELAY_KEY] = delay_s
    app.router.add_post("/workflow/{name}", _workflow)
    app.router.add_post("/function/{name}", _function)
    app.router.add_get("/healthz", _health)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args(argv)

    async def on_startup(app: web.Application) -> None:
        for site in runner.sites:
            server = getattr(site, "_server", None)
            for sock in getattr(server, "sockets", None) or []:
                host, port = sock.getsockname()[:2]
                print(f"listening on http://{host}:{port}", flush=True)

    async def serve() -> None:
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        await on_startup(app)
        await asyncio.Event().wait()

    app = build_app(args.delay_s)
    runner = web.AppRunner(app, access_log=None)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
