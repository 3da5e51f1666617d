"""Real OpenFaaS gateway + our provider vs our gateway alone: latency, throughput, cold start,
and the seconds from a load step to the AlertManager-driven scale-up.

Starts, in one run, our gateway (local backend) on the host and the OpenFaaS CE stack
(`aquatope up --platform openfaas`: the real gateway in a container, Prometheus, AlertManager
and our provider in its namespace), deploys the shipped `noop` function on both (one replica,
no CPU cap), then:

1. latency: sequential keep-alive POSTs, alternating between the two in 10 rounds (p50/p99);
2. throughput: a closed loop of `--threads` client threads for `--seconds` on each (req/s; the
   Python client shares the machine's cores, so these are floors of the gateways' ceilings);
3. cold start: `--cold` fresh deployments (scale.min 0, no replica) invoked once, on each;
4. autoscaling: a closed-loop load step on the real gateway (scale.min 1, max 4, factor 50 %,
   the CE alert rule: > 5 req/s over 10 s for 5 s) until the gateway raises the replicas.

Usage: python bench/openfaas_overhead.py [--requests 2000] [--threads 8] [--seconds 5] [--cold 5]
Needs what `aquatope up --platform openfaas` needs (Docker, root, Go 1.19, prometheus,
prometheus-alertmanager, the gateway source archive).
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from _common import emit, machine, percentiles_ms, temp_home

from testbed.backends import connect
from testbed.backends.openfaas import OpenFaaSPlatform
from testbed.core.config import Limits
from testbed.core.platform import FunctionSpec, Platform
from testbed.core.stack import load_stack
from testbed.openfaas_ce import StackOptions, start_stack

REPO = Path(__file__).resolve().parents[1]
LOAD_LIMIT_S = 120.0


def _hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def timed_posts(url: str, path: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection(*_hostport(url))
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - start)
        assert response.status == 200, response.status
    conn.close()
    return out


def closed_loop(url: str, path: str, threads: int, seconds: float) -> float:
    """Requests per second of ``threads`` keep-alive clients for ``seconds``."""
    done = [0] * threads
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(*_hostport(url))
        while time.monotonic() < stop_at:
            conn.request("POST", path, body=b"{}")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                done[i] += 1
        conn.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return round(sum(done) / (time.monotonic() - start), 1)


def cold_starts(platform: Platform, spec: FunctionSpec, n: int) -> list[float]:
    """Seconds of the first request to ``n`` fresh deployments with no replica."""
    out = []
    for i in range(n):
        fresh = replace(spec, name=f"cold-{i}")
        platform.deploy(fresh)
        assert not platform.status(fresh.name).replicas
        start = time.perf_counter()
        result = platform.invoke(fresh.name, b"{}")
        out.append(time.perf_counter() - start)
        assert result.ok, result.status_code
        platform.remove(fresh.name)
    return out


def load_step_to_scale_up(platform: OpenFaaSPlatform, spec: FunctionSpec) -> tuple[float, int]:
    """Closed-loop load (2 threads) from t=0 until the target replicas rise; (seconds, sent)."""
    platform.deploy(spec)
    platform.scale(spec.name, replicas=1)
    while platform.status(spec.name).replicas_ready < 1:
        time.sleep(0.1)
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        conn = http.client.HTTPConnection(*_hostport(platform.url))
        while not stop.is_set():
            conn.request("POST", f"/function/{spec.name}", body=b"{}")
            conn.getresponse().read()
            sent[0] += 1
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    try:
        while time.monotonic() - start < LOAD_LIMIT_S:
            if platform.status(spec.name).target_replicas > 1:
                return round(time.monotonic() - start, 1), sent[0]
            time.sleep(0.25)
        raise SystemExit(f"no scale-up within {LOAD_LIMIT_S:g}s of load")
    finally:
        stop.set()
        for t in threads:
            t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cold", type=int, default=5)
    args = parser.parse_args()
    noop = replace(load_stack(REPO / "stack.yml")["noop"], limits=Limits(), max_inflight=64)
    home_ours = temp_home("ours")
    home_of = temp_home("openfaas")
    with (
        connect("local", state_dir=home_ours) as ours,
        start_stack(StackOptions(home=home_of)) as stack,
    ):
        password = (home_of / "basic-auth-password").read_text().strip()
        real = OpenFaaSPlatform(stack.url, password=password, metrics_url=stack.metrics_url)
        for platform in (ours, real):
            platform.deploy(noop)
            platform.scale("noop", replicas=1)
            platform.invoke("noop", b"{}")
        ours_url = ours.url  # type: ignore[attr-defined]
        lat_ours: list[float] = []
        lat_real: list[float] = []
        for _ in range(10):
            lat_ours += timed_posts(ours_url, "/function/noop", args.requests // 10)
            lat_real += timed_posts(stack.url, "/function/noop", args.requests // 10)
        rps_ours = closed_loop(ours_url, "/function/noop", args.threads, args.seconds)
        rps_real = closed_loop(stack.url, "/function/noop", args.threads, args.seconds)
        cold_ours = cold_starts(ours, noop, args.cold)
        cold_real = cold_starts(real, noop, args.cold)
        busy = replace(
            noop,
            name="busy",
            labels={
                "com.openfaas.scale.min": "1",
                "com.openfaas.scale.max": "4",
                "com.openfaas.scale.factor": "50",
            },
        )
        scale_up_s, sent = load_step_to_scale_up(real, busy)
        real.close()
    o, r = percentiles_ms(lat_ours), percentiles_ms(lat_real)
    co, cr = percentiles_ms(cold_ours), percentiles_ms(cold_real)
    figures = {
        "bench": "openfaas_overhead",
        "requests_each": len(lat_ours),
        "ours_ms": o,
        "openfaas_ms": r,
        "added_p50_ms": round(r["p50"] - o["p50"], 3),
        "added_p99_ms": round(r["p99"] - o["p99"], 3),
        "ours_rps": rps_ours,
        "openfaas_rps": rps_real,
        "client_threads": args.threads,
        "cold_start_ours_ms": co,
        "cold_start_openfaas_ms": cr,
        "cold_starts_each": args.cold,
        "load_step_to_scale_up_s": scale_up_s,
        "load_step_requests": sent,
        "machine": machine(),
    }
    print(f"ours      p50 {o['p50']:.3f} ms  p99 {o['p99']:.3f} ms  {rps_ours} req/s")
    print(f"openfaas  p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  {rps_real} req/s")
    print(f"cold start p50: ours {co['p50']:.0f} ms, openfaas {cr['p50']:.0f} ms")
    print(f"load step -> AlertManager scale-up: {scale_up_s} s ({sent} requests)")
    emit(figures)


if __name__ == "__main__":
    main()
