"""A plain aiohttp reverse proxy: the same-run reference for ``bench/gateway_overhead.py``.

It does what the gateway's hot path must do at least (read the body, forward it over a
keep-alive session, copy status and body back) and nothing else: no auth, queue, metrics or
routing. Prints ``{"port": N}`` once listening; runs until killed.

Usage: python bench/_plain_proxy.py --target http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
from aiohttp import web


async def serve(target: str) -> None:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(target + "/", data=body) as resp:
            return web.Response(body=await resp.read(), status=resp.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    asyncio.run(serve(parser.parse_args().target))


if __name__ == "__main__":
    main()
