"""How faithfully does the load generator send at 100, 500 and 1000 requests/s?

Against a no-op HTTP server in its own process (``loadgen.contrib.noop_gateway``) on
127.0.0.1, for each rate this runs, one after the other:

- **open loop** (ours): ``loadgen.replay`` of an evenly spaced schedule, in a child process,
  sleeping until each send (default) and again busy-waiting the last 1 ms (``spin_s``);
- **stock Locust** (closed loop): ``FastHttpUser`` users with ``constant_throughput``
  (10 requests/s each, users = rate / 10), in a child process; a user's k-th ideal send is
  at ``phase + k / 10 s``, with the phase that makes its earliest send on time.

and reports achieved vs intended rate (error %), send lateness p50/p99 (ms), requests late
by more than 5 ms, dropped requests, the latency each tool measured (p50, ms) and the CPU
seconds the load generator's process used.

Usage: ``python bench/loadgen_accuracy.py [--seconds 10] [--rates 100,500,1000]``.
Prints one line per run, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LATE_S = 0.005
PER_USER_RPS = 10.0


def _start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen.contrib.noop_gateway", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"http://\S+", proc.stdout.readline())
    if not match:
        proc.kill()
        raise SystemExit("noop server did not start")
    return proc, match.group(0)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _open_loop(
    url: str, rate: float, seconds: float, out: Path, spin_s: float = 0.0
) -> dict[str, Any]:
    from loadgen import ReplayOptions, replay_in_child
    from loadgen.plan import plan
    from loadgen.trace import Trace

    n = int(rate * seconds)
    trace = Trace({"f": np.arange(n) / rate}, seconds)
    cpu0 = _children_cpu_s()
    result = replay_in_child(
        plan(trace, ["function:noop"]),
        url,
        out,
        ReplayOptions(late_after_s=LATE_S, spin_s=spin_s),
        wall_timeout_s=seconds * 6,
    )
    cpu_s = _children_cpu_s() - cpu0
    import csv

    with (out / "requests.csv").open() as fh:
        lat = [float(r["latency_s"]) for r in csv.DictReader(fh) if r["ok"] == "True"]
    return {
        "intended_rps": rate,
        "achieved_rps": result.achieved_rate_per_s,
        "rate_error_pct": 100.0 * (result.achieved_rate_per_s - rate) / rate,
        "lateness_p50_ms": result.lateness_p50_s * 1000,
        "lateness_p99_ms": result.lateness_p99_s * 1000,
        "late": result.late,
        "dropped": result.dropped,
        "errors": result.errors,
        "sent": result.sent,
        "scheduled": result.scheduled,
        "latency_p50_ms": float(np.median(lat)) * 1000 if lat else math.nan,
        "loadgen_cpu_s": cpu_s,
    }


def _stock(url: str, rate: float, seconds: float) -> dict[str, Any]:
    cpu0 = _children_cpu_s()
    proc = subprocess.run(
        [sys.executable, __file__, "--stock-child", url, str(rate), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds * 6 + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"stock locust child failed: {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["loadgen_cpu_s"] = _children_cpu_s() - cpu0
    return out


def _stock_child(url: str, rate: float, seconds: float) -> None:
    """Run stock Locust closed-loop users and print one JSON line (child process)."""
    import gevent
    from locust import FastHttpUser, constant_throughput, task
    from locust.env import Environment

    users = max(1, round(rate / PER_USER_RPS))
    sends: dict[int, list[float]] = {}
    latencies: list[float] = []
    failures = [0]
    counter = [0]

    class Noop(FastHttpUser):
        wait_time = constant_throughput(PER_USER_RPS)
        host = url

        def on_start(self) -> None:
            counter[0] += 1
            self.uid = counter[0]

        def context(self) -> dict[str, Any]:
            return {"uid": self.uid}

        @task
        def call(self) -> None:
            self.client.post("/function/noop", data=b"{}")

    def on_request(
        start_time: float,
        response_time: float,
        context: dict[str, Any],
        exception: Any,
        **_: Any,
    ) -> None:
        sends.setdefault(context["uid"], []).append(start_time)
        if exception is None:
            latencies.append(response_time / 1000.0)
        else:
            failures[0] += 1

    env = Environment(user_classes=[Noop])
    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users * 10)
    gevent.sleep(seconds)
    runner.quit()
    lateness: list[float] = []
    for times in sends.values():
        t = np.sort(np.asarray(times))
        offset = t - np.arange(t.size) / PER_USER_RPS
        lateness.extend((offset - offset.min()).tolist())  # vs the user's best phase
    all_sends = np.sort(np.concatenate([np.asarray(v) for v in sends.values()]))
    steady = all_sends[all_sends >= all_sends[0] + 1.0]  # after every user has started
    achieved = (steady.size - 1) / (steady[-1] - steady[0]) if steady.size > 1 else 0.0
    late = np.asarray(lateness)
    print(
        json.dumps(
            {
                "intended_rps": rate,
                "users": users,
                "achieved_rps": achieved,
                "rate_error_pct": 100.0 * (achieved - rate) / rate,
                "lateness_p50_ms": float(np.percentile(late, 50)) * 1000,
                "lateness_p99_ms": float(np.percentile(late, 99)) * 1000,
                "late": int((late > LATE_S).sum()),
                "dropped": None,
                "errors": failures[0],
                "sent": int(all_sends.size),
                "latency_p50_ms": float(np.median(latencies)) * 1000 if latencies else None,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="100,500,1000")
    parser.add_argument("--stock-child", nargs=3, metavar=("URL", "RATE", "SECONDS"))
    args = parser.parse_args()
    if args.stock_child:
        url, rate, seconds = args.stock_child
        _stock_child(url, float(rate), float(seconds))
        return
    rates = [float(r) for r in args.rates.split(",")]
    server, url = _start_server()
    results: dict[str, Any] = {
        "seconds": args.seconds,
        "late_threshold_ms": LATE_S * 1000,
        "open_loop": [],
        "open_loop_spin_1ms": [],
        "stock_locust": [],
    }
    started = time.time()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rate in rates:
                ours = _open_loop(url, rate, args.seconds, Path(tmp) / f"r{int(rate)}")
                spin = _open_loop(url, rate, args.seconds, Path(tmp) / f"s{int(rate)}", 0.001)
                stock = _stock(url, rate, args.seconds)
                results["open_loop"].append(ours)
                results["open_loop_spin_1ms"].append(spin)
                results["stock_locust"].append(stock)
                for label, r in (("open-loop ", ours), ("open+spin ", spin), ("stock     ", stock)):
                    print(
                        f"{label} {rate:6.0f}/s: achieved {r['achieved_rps']:7.1f}/s "
                        f"({r['rate_error_pct']:+.2f}%), lateness p50 "
                        f"{r['lateness_p50_ms']:.2f} ms p99 {r['lateness_p99_ms']:.2f} ms, "
                        f"late>{LATE_S * 1000:.0f}ms {r['late']}, dropped {r['dropped']}, "
                        f"errors {r['errors']}, latency p50 {r['latency_p50_ms']:.2f} ms, "
                        f"loadgen CPU {r['loadgen_cpu_s']:.1f} s",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(timeout=10)
    results["wall_s"] = time.time() - started
    print(json.dumps(results))


if __name__ == "__main__":
    main()
