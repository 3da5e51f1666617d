"""Gateway overhead: latency added versus calling a replica directly, and max requests/s.

Starts a real gateway (local backend) with the shipped `noop` function on one replica, then
alternates sequential keep-alive requests straight to the replica, through the gateway and
through two same-run references (``bench/_plain_proxy.py``): a plain aiohttp reverse proxy
(what any Python proxy costs) and the same aiohttp server forwarding with the gateway's own
replica client and nothing else (the floor under the gateway: the difference is the
gateway's own logic). Finally it drives each with `wrk` (when installed) at 10 connections
for the throughput ceiling: ``--wrk-rounds`` rounds, each driving every target in turn, so
drift on a shared machine falls on all of them; the medians are reported, and the median of
the per-round ratios gateway / plain proxy.

Usage: python bench/gateway_overhead.py [--requests 3000] [--wrk-seconds 5] [--wrk-rounds 5]
Targets (issue #3): p50 overhead < 1 ms, p99 < 5 ms. Issue #16: added p50 <= 0.3 ms and at
least the plain proxy's req/s.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httptools
from _common import emit, machine, percentiles_ms, temp_home

from testbed.backends import connect
from testbed.core.config import Limits
from testbed.core.stack import load_stack

REPO = Path(__file__).resolve().parents[1]


def timed_posts(host: str, port: int, path: str, n: int) -> list[float]:
    """``n`` sequential keep-alive POSTs; each one's seconds from send to the answer's end.

    The answer is parsed by ``httptools`` (C), not ``http.client``: the standard library
    parses headers in Python at several microseconds each, which would count the gateway's
    extra answer headers (``X-Cold-Start``, ``X-Start-Time``) as its latency.
    """
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    done: list[bool] = []
    status: list[int] = []

    class Answer:
        def on_message_complete(self) -> None:
            done.append(True)

    parser = httptools.HttpResponseParser(Answer())
    out = []
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            start = time.perf_counter()
            sock.sendall(request)
            while not done:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"{host}:{port} closed the connection")
                parser.feed_data(data)
            out.append(time.perf_counter() - start)
            done.clear()
            status.append(parser.get_status_code())
    assert set(status) == {200}, set(status)
    return out


def wrk_rounds(targets: dict[str, str], seconds: int, rounds: int) -> dict[str, list[float]]:
    """Requests/s of each target per round, the targets taken in turn within each round."""
    out: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, url in targets.items():
            value = wrk_rps(url, seconds)
            if value is None:
                return {}
            out[name].append(value)
    return out


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def wrk_rps(url: str, seconds: int) -> float | None:
    if shutil.which("wrk") is None:
        return None
    lua = Path(temp_home("wrk")) / "post.lua"
    lua.write_text('wrk.method = "POST"\nwrk.body = "{}"\n')
    out = subprocess.run(
        ["wrk", "-t1", "-c10", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if re.search(r"Non-2xx or 3xx responses", out):
        raise SystemExit(f"wrk saw error responses from {url}:\n{out}")
    return float(match.group(1)) if match else None


@contextmanager
def plain_proxy(target: str, client: str = "aiohttp") -> Iterator[int]:
    """Run ``bench/_plain_proxy.py`` in front of ``target``; yields its port."""
    script = str(Path(__file__).with_name("_plain_proxy.py"))
    proc = subprocess.Popen(
        [sys.executable, script, "--target", target, "--client", client],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        yield int(json.loads(proc.stdout.readline())["port"])
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--wrk-rounds", type=int, default=5)
    args = parser.parse_args()
    home = temp_home("gateway")
    # no CPU cap and a generous in-flight limit: measure the gateway, not the replica's quota
    noop = replace(load_stack(REPO / "stack.yml")["noop"], limits=Limits(), max_inflight=64)
    with connect("local", state_dir=home) as platform:
        platform.deploy(noop)
        platform.scale("noop", replicas=1)
        platform.invoke("noop", b"{}")
        replica = platform.status("noop").replicas[0]
        r_host, r_port = replica.address.removeprefix("http://").split(":")
        g_host, g_port = platform.url.removeprefix("http://").split(":")
        direct: list[float] = []
        gateway: list[float] = []
        proxied: list[float] = []
        leaned: list[float] = []
        with (
            plain_proxy(replica.address) as proxy_port,
            plain_proxy(replica.address, "lean") as lean_port,
        ):
            timed_posts("127.0.0.1", proxy_port, "/", 50)  # warm their connections
            timed_posts("127.0.0.1", lean_port, "/", 50)
            each = args.requests // 10
            for _ in range(10):  # interleave to share drift and noise
                direct += timed_posts(r_host, int(r_port), "/", each)
                gateway += timed_posts(g_host, int(g_port), "/function/noop", each)
                proxied += timed_posts("127.0.0.1", proxy_port, "/", each)
                leaned += timed_posts("127.0.0.1", lean_port, "/", each)
            targets = {
                "gateway": f"{platform.url}/function/noop",
                "plain_proxy": f"http://127.0.0.1:{proxy_port}/",
                "lean_proxy": f"http://127.0.0.1:{lean_port}/",
                "direct": f"{replica.address}/",
            }
            rounds = wrk_rounds(targets, args.wrk_seconds, args.wrk_rounds)
    d, g, p = percentiles_ms(direct), percentiles_ms(gateway), percentiles_ms(proxied)
    lean = percentiles_ms(leaned)
    rps = {name: _median(values) for name, values in rounds.items()}
    ratio = None
    if rounds.get("gateway") and rounds.get("plain_proxy"):
        pairs = zip(rounds["gateway"], rounds["plain_proxy"], strict=True)
        ratio = round(statistics.median(g / p for g, p in pairs), 3)
    figures = {
        "bench": "gateway_overhead",
        "requests_each": len(direct),
        "direct_ms": d,
        "gateway_ms": g,
        "overhead_p50_ms": round(g["p50"] - d["p50"], 3),
        "overhead_p99_ms": round(g["p99"] - d["p99"], 3),
        "plain_proxy_ms": p,
        "plain_proxy_overhead_p50_ms": round(p["p50"] - d["p50"], 3),
        "lean_proxy_ms": lean,
        "lean_proxy_overhead_p50_ms": round(lean["p50"] - d["p50"], 3),
        "gateway_max_rps_wrk_c10": rps.get("gateway"),
        "plain_proxy_max_rps_wrk_c10": rps.get("plain_proxy"),
        "lean_proxy_max_rps_wrk_c10": rps.get("lean_proxy"),
        "direct_max_rps_wrk_c10": rps.get("direct"),
        "gateway_to_plain_proxy_rps": ratio,
        "wrk_rounds": {name: [round(v) for v in values] for name, values in rounds.items()},
        "machine": machine(),
    }
    print(f"direct  p50 {d['p50']:.3f} ms  p99 {d['p99']:.3f} ms")
    print(f"gateway p50 {g['p50']:.3f} ms  p99 {g['p99']:.3f} ms")
    print(f"proxy   p50 {p['p50']:.3f} ms  p99 {p['p99']:.3f} ms  (plain aiohttp reference)")
    print(f"lean    p50 {lean['p50']:.3f} ms  p99 {lean['p99']:.3f} ms  (aiohttp + replica client)")
    print(
        f"overhead p50 {figures['overhead_p50_ms']} ms, p99 {figures['overhead_p99_ms']} ms "
        f"(plain proxy {figures['plain_proxy_overhead_p50_ms']}, "
        f"lean {figures['lean_proxy_overhead_p50_ms']})"
    )
    if rps:
        print(
            f"max req/s (wrk, median of {args.wrk_rounds}): gateway {rps.get('gateway')}, "
            f"plain proxy {rps.get('plain_proxy')}, lean {rps.get('lean_proxy')}, "
            f"replica alone {rps.get('direct')}; gateway / plain proxy {ratio}"
        )
    emit(figures)


if __name__ == "__main__":
    main()
