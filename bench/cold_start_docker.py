"""Container cold starts on the docker backend, next to local processes and the bare floor.

Measured in one run, on one machine:

* **floor**: a bare container of the first function's image, with that function's CPU
  and memory limits, created and started with the Docker SDK, running a minimal stdlib
  HTTP server (``python3`` start + ``http.server`` import), timed to its first HTTP 200,
  in the same network mode as the runtime (``pod``: joining a holder's network namespace)
  and in plain ``bridge`` mode (own address);
* **docker cold start** per function: scale to zero, wait until no replica is left, send
  one request through the gateway (``--backend docker``) and time the response;
* **local cold start** of the same functions (gateway ``--backend local``);
* **image builds**: every selected image again (all cached) and one function layer
  forced (cold; base and dependency layers cached);
* **live limit update**: ``set_limits`` round trip through the gateway (one replica).

Usage: python bench/cold_start_docker.py [--starts 6] [--functions noop,cpu-burn]
Target (issue #4): docker cold start p50 within 1.5x of the pod-mode floor p50.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import emit, machine, percentiles_ms, temp_home

from testbed.backends import connect
from testbed.core.config import Limits
from testbed.core.platform import Platform
from testbed.core.stack import load_stack

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FUNCTIONS = "noop,cpu-burn,image-processing,object-detection,compose-post"
SERVER = (
    "import http.server as h\n"
    "class H(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers()\n"
    "    def log_message(self, *a): pass\n"
    "h.HTTPServer(('0.0.0.0', {port}), H).serve_forever()\n"
)


def payload_for(function: str) -> bytes:
    """The same request bodies as bench/cold_start.py (entry payloads, else ``{}``)."""
    import random

    from functions.workloads import make_payload
    from testbed.core.workflows import load_workflows

    for workflow in load_workflows().workflows.values():
        if function in [s.function for s in workflow.stages if not s.after]:
            return make_payload(workflow.name, random.Random(0))
    if function in ("noop", "cpu-burn"):
        return make_payload(function, random.Random(0))
    return b"{}"


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def floors_s(client: Any, image: str, limits: Limits, n: int) -> dict[str, list[float]]:
    """Bare container start to first HTTP 200, pod mode and bridge mode, under ``limits``."""
    caps: dict[str, Any] = {}
    if limits.cpu_cores is not None:
        caps.update(cpu_period=100_000, cpu_quota=round(limits.cpu_cores * 100_000))
    if limits.memory_mb is not None:
        caps.update(mem_limit=limits.memory_mb * 2**20, memswap_limit=limits.memory_mb * 2**20)
    network = client.networks.create(f"aquatope-bench-{time.time_ns()}", driver="bridge")
    holder = client.containers.run(
        image, ["sleep", "infinity"], network=network.name, detach=True, entrypoint=[]
    )
    holder.reload()
    holder_ip = holder.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    out: dict[str, list[float]] = {"pod": [], "bridge": []}
    try:
        for i in range(n):
            for mode in ("pod", "bridge"):
                port = 9000 + i if mode == "pod" else 8080
                started = time.perf_counter()
                kwargs: dict[str, Any] = (
                    {"network_mode": f"container:{holder.id}"}
                    if mode == "pod"
                    else {"network": network.name}
                )
                container = client.containers.create(
                    image, ["python3", "-c", SERVER.format(port=port)], **kwargs, **caps
                )
                container.start()
                if mode == "pod":
                    ip = holder_ip
                else:
                    container.reload()
                    ip = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
                wait_http(f"http://{ip}:{port}/")
                out[mode].append(time.perf_counter() - started)
                container.remove(force=True)
    finally:
        holder.remove(force=True)
        network.remove()
    return out


def cold_starts_s(platform: Platform, name: str, body: bytes, n: int) -> tuple[list[float], int]:
    platform.invoke(name, body)  # the first start may pay one-off work
    cold: list[float] = []
    flagged = 0
    for _ in range(n):
        platform.scale(name, replicas=0)
        deadline = time.monotonic() + 30
        while platform.status(name).replicas and time.monotonic() < deadline:
            time.sleep(0.02)
        result = platform.invoke(name, body)
        cold.append(result.duration_s)
        flagged += result.cold_start
    return cold, flagged


def limit_updates_s(platform: Platform, name: str, n: int) -> list[float]:
    platform.scale(name, replicas=1)
    deadline = time.monotonic() + 30
    while platform.status(name).replicas_ready < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    out = []
    for i in range(n):
        limits = Limits(cpu_cores=0.5 if i % 2 == 0 else 1.0, memory_mb=512)
        started = time.perf_counter()
        platform.set_limits(name, limits)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=6)
    parser.add_argument("--functions", default=DEFAULT_FUNCTIONS, help="comma-separated")
    parser.add_argument("--no-local", action="store_true", help="skip the local backend")
    args = parser.parse_args()
    from testbed.gateway.runtimes.images import ImageBuilder
    from testbed.gateway.runtimes.images.engine import connect_engine

    stack = load_stack(REPO / "stack.yml")
    names = [n for n in args.functions.split(",") if n]
    specs = [stack[n] for n in names]
    client = connect_engine()
    builder = ImageBuilder(client, log=print)
    builder.build(specs)  # make sure images exist before timing anything
    started = time.perf_counter()
    cached = builder.build(specs)
    cached_build_s = time.perf_counter() - started
    assert all(r.cached for r in cached)
    (forced,) = builder.build([stack[names[0]]], force=True)
    print(
        f"image build: {len(specs)} cached in {cached_build_s:.2f} s; "
        f"{names[0]} function layer cold in {forced.duration_s:.2f} s"
    )

    floor_limits = stack[names[0]].limits
    floor = floors_s(client, forced.image, floor_limits, args.starts)
    floor_ms = {mode: percentiles_ms(v) for mode, v in floor.items()}
    print(
        f"floor ({names[0]}'s limits {floor_limits.to_openfaas()}; create+start+python "
        f"http.server to first 200): pod p50 "
        f"{floor_ms['pod']['p50']:.0f} ms, bridge p50 {floor_ms['bridge']['p50']:.0f} ms"
    )

    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    home = temp_home("cold-docker")
    with connect("docker", state_dir=home) as platform:
        for name in names:
            platform.deploy(stack[name])
            cold, flagged = cold_starts_s(platform, name, payload_for(name), args.starts)
            results[name]["docker_cold_ms"] = percentiles_ms(cold)
            results[name]["docker_cold_flagged"] = flagged
            print(
                f"{name:20} docker cold p50 {results[name]['docker_cold_ms']['p50']:7.0f} ms"
                f"  p95 {results[name]['docker_cold_ms']['p95']:7.0f} ms"
            )
        updates = limit_updates_s(platform, names[0], 10)
        for name in names:
            platform.remove(name)
    update_ms = percentiles_ms(updates)
    print(f"live limit update (set_limits round trip): p50 {update_ms['p50']:.1f} ms")
    if not args.no_local:
        home = temp_home("cold-local")
        with connect("local", state_dir=home) as platform:
            for name in names:
                platform.deploy(stack[name])
                cold, _ = cold_starts_s(platform, name, payload_for(name), args.starts)
                results[name]["local_cold_ms"] = percentiles_ms(cold)
                print(f"{name:20} local  cold p50 {results[name]['local_cold_ms']['p50']:7.0f} ms")
                platform.remove(name)
    first = results[names[0]]["docker_cold_ms"]["p50"]
    ratio = first / floor_ms["pod"]["p50"]
    print(f"{names[0]} docker cold p50 / pod floor p50 = {ratio:.2f} (target <= 1.5)")
    emit(
        {
            "bench": "cold_start_docker",
            "backend": "docker",
            "network_mode": "pod",
            "functions": results,
            "floor_ms": floor_ms,
            "floor_limits": floor_limits.to_openfaas(),
            "cold_over_floor_p50": round(ratio, 3),
            "image_build_s": {
                "cached_all": round(cached_build_s, 3),
                "function_layer_cold": round(forced.duration_s, 3),
                "images": len(specs),
            },
            "limit_update_ms": update_ms,
            "starts": args.starts,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
