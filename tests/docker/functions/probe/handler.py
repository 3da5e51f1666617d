"""A tiny test function: echo, burn CPU, or hold memory, as the JSON body asks.

Body: ``{"spin": N, "procs": P}`` runs N iterations of integer arithmetic in each of P
forked processes (P > 1 can use several cores); ``{"alloc_mb": M}`` touches M MiB of
memory before answering. The answer reports wall and CPU seconds of the work. Stdlib
only, so its image needs no wheels.
"""

from __future__ import annotations

import json
import os
import time


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def handle(event, context):
    request = json.loads(event.body or b"{}")
    started = time.perf_counter()
    cpu_before = os.times()
    iterations = int(request.get("spin", 0))
    procs = max(1, int(request.get("procs", 1)))
    children = []
    for _ in range(procs - 1):
        pid = os.fork()
        if pid == 0:
            _spin(iterations)
            os._exit(0)
        children.append(pid)
    total = _spin(iterations)
    for pid in children:
        os.waitpid(pid, 0)
    cpu_after = os.times()
    cpu_s = sum(cpu_after[:4]) - sum(cpu_before[:4])  # self + reaped children, user + system
    held = bytearray(int(request.get("alloc_mb", 0)) * 1024 * 1024)
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    return {
        "statusCode": 200,
        "body": {
            "function": context.function,
            "pid": os.getpid(),
            "total": total,
            "touched_mb": len(held) // (1024 * 1024),
            "compute_s": time.perf_counter() - started,
            "cpu_s": cpu_s,
        },
    }
