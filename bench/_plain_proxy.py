"""Plain aiohttp reverse proxies: the same-run references for ``bench/gateway_overhead.py``.

Each does what the gateway's hot path must do at least (read the body, forward it over a
keep-alive connection, copy status and body back) and nothing else: no auth, queue, metrics
or routing. ``--client aiohttp`` forwards with aiohttp's client (what any Python proxy built
on aiohttp costs); ``--client lean`` with the gateway's own replica client (the floor under
the gateway: what is left is the gateway's own logic). Prints ``{"port": N}`` once
listening; runs until killed.

Usage: python bench/_plain_proxy.py --target http://127.0.0.1:PORT [--client aiohttp|lean]
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
from aiohttp import web

from testbed.gateway.replica_client import ReplicaClient


async def serve(target: str, client: str) -> None:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
    lean = ReplicaClient(timeout_s=60)

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        if client == "lean":
            resp = await lean.request(target, "POST", "/", {}, body)
            return web.Response(body=resp.body, status=resp.status)
        async with session.post(target + "/", data=body) as answer:
            return web.Response(body=await answer.read(), status=answer.status)

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
    parser.add_argument("--client", choices=("aiohttp", "lean"), default="aiohttp")
    args = parser.parse_args()
    asyncio.run(serve(args.target, args.client))


if __name__ == "__main__":
    main()
