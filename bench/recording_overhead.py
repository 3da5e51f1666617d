"""Overhead of per-request recording on the gateway path (target: < 2% throughput loss).

One run: a local gateway with the ``noop`` function (2 warm replicas); a load-generator
process drives ``POST /function/noop`` as fast as ``--concurrency`` greenlets can (closed
loop, the loadgen's own sender and Locust request events), in alternating phases with the
recorder (:class:`loadgen.record.Recorder`, the one that writes ``requests.csv``) attached
and detached, in blocks on/off/off/on so slow drift cancels. Throughput is completed
requests per second in each phase; the loss of a block is 1 - sum(on) / sum(off), reported
as the mean over blocks with a 95% t-interval.

Usage: ``python bench/recording_overhead.py [--phases 32] [--phase-s 1.5] [--concurrency 8]``;
the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _client(url: str, phases: int, phase_s: float, concurrency: int, out: str) -> None:
    """Load-generator side (own process: Locust patches the standard library)."""
    import gevent
    from locust.env import Environment

    from loadgen.payloads import PayloadPool
    from loadgen.record import Recorder
    from loadgen.users import OpenLoopSender

    env = Environment(user_classes=[], catch_exceptions=True)
    perf0 = time.perf_counter()
    t0 = time.time()

    def clock() -> float:
        return time.perf_counter() - perf0

    sender = OpenLoopSender(
        env,
        url,
        PayloadPool(["noop"], seed=0),
        clock=clock,
        max_in_flight=concurrency * 2,
        timeout_s=30.0,
    )
    recorder = Recorder(out, t0_unix_s=t0)
    state = {"done": 0, "errors": 0, "stop": False, "next_id": 0}

    def errors_listener(exception: object = None, **_: object) -> None:
        if exception is not None:
            state["errors"] += 1

    env.events.request.add_listener(errors_listener)

    def worker() -> None:
        while not state["stop"]:
            rid = state["next_id"]
            state["next_id"] += 1
            sender.send(rid, "noop", "function", clock(), float("nan"))
            state["done"] += 1

    def flusher() -> None:
        while True:
            gevent.sleep(1.0)
            recorder.flush()

    pattern = [True, False, False, True]
    results = []
    workers = [gevent.spawn(worker) for _ in range(concurrency)]
    flush_greenlet = None
    gevent.sleep(2.0)  # warm the connections
    for i in range(phases):
        on = pattern[i % len(pattern)]
        if on:
            env.events.request.add_listener(recorder.on_request)
            flush_greenlet = gevent.spawn(flusher)
        start_done, start = state["done"], clock()
        gevent.sleep(phase_s)
        rate = (state["done"] - start_done) / (clock() - start)
        if on:
            env.events.request.remove_listener(recorder.on_request)
            if flush_greenlet is not None:
                flush_greenlet.kill()
        results.append({"recording": on, "rps": rate})
        print(
            f"phase {i + 1}: recording {'on ' if on else 'off'} {rate:8.1f} req/s",
            file=sys.stderr,
            flush=True,
        )
    state["stop"] = True
    gevent.joinall(workers, timeout=10)
    recorder.finalize()
    print(
        json.dumps(
            {"phases": results, "errors": state["errors"], "recorded": len(recorder.records)}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=32)
    parser.add_argument("--phase-s", type=float, default=1.5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        _client(args.client, args.phases, args.phase_s, args.concurrency, args.out)
        return

    import tempfile

    from _common import emit, machine, temp_home

    from testbed.backends import connect
    from testbed.core.stack import load_stack

    temp_home("recording")
    noop = load_stack(REPO / "stack.yml")["noop"]
    with tempfile.TemporaryDirectory() as out, connect("local") as platform:
        platform.deploy(noop)
        platform.scale("noop", replicas=2)
        deadline = time.monotonic() + 60
        while platform.status("noop").replicas_ready < 2:
            if time.monotonic() > deadline:
                raise SystemExit("noop replicas never became ready")
            time.sleep(0.2)
        url = platform.url  # type: ignore[attr-defined]
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                url,
                "--out",
                out,
                "--phases",
                str(args.phases),
                "--phase-s",
                str(args.phase_s),
                "--concurrency",
                str(args.concurrency),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=args.phases * args.phase_s + 120,
            check=False,
        )
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0:
        raise SystemExit(f"client failed with code {proc.returncode}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    phases = data["phases"]
    on = [p["rps"] for p in phases if p["recording"]]
    off = [p["rps"] for p in phases if not p["recording"]]
    mean_on, mean_off = sum(on) / len(on), sum(off) / len(off)
    # per block of four phases (on, off, off, on): drift within a block cancels
    blocks = [phases[i : i + 4] for i in range(0, len(phases) - 3, 4)]
    block_loss = [
        100.0
        * (
            1.0
            - sum(p["rps"] for p in b if p["recording"])
            / sum(p["rps"] for p in b if not p["recording"])
        )
        for b in blocks
    ]
    loss_pct = statistics.mean(block_loss)
    half = float("nan")
    if len(block_loss) > 1:
        from scipy.stats import t as student_t

        tq = float(student_t.ppf(0.975, len(block_loss) - 1))
        half = tq * statistics.stdev(block_loss) / len(block_loss) ** 0.5
    print(f"recording on : {mean_on:8.1f} req/s over {len(on)} phases")
    print(f"recording off: {mean_off:8.1f} req/s over {len(off)} phases")
    print(
        f"throughput loss from recording: {loss_pct:.2f} % ± {half:.2f} (95% CI over "
        f"{len(block_loss)} on/off/off/on blocks; target < 2 %); "
        f"{data['recorded']} requests recorded, {data['errors']} errors"
    )
    emit(
        {
            "rps_recording_on": round(mean_on, 1),
            "rps_recording_off": round(mean_off, 1),
            "loss_pct": round(loss_pct, 2),
            "loss_ci95_pct": round(half, 2),
            "blocks": len(block_loss),
            "target_pct": 2.0,
            "meets_target": loss_pct < 2.0,
            "phases": args.phases,
            "phase_s": args.phase_s,
            "concurrency": args.concurrency,
            "errors": data["errors"],
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
