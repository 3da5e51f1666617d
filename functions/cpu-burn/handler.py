"""cpu-burn: CPU-bound work sized by the request, for CPU-limit tests and benchmarks.

Runs a SHA-256 hash chain of ``n`` rounds and counts the primes below ``n // 10`` with a
sieve-free trial division, all in pure Python (one core, no I/O).

Request: ``{"n": int}`` with ``1 <= n <= 5_000_000`` (``n = 100_000`` is about 0.1 s here).
Response: ``{"n", "digest": hex, "primes": int, "cpu_s": float}``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

try:
    from functions.common.http import BadInput, field, json_handler
except ModuleNotFoundError:  # the repository root is not on sys.path (plain runner process)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from functions.common.http import BadInput, field, json_handler

__all__ = ["burn", "handle"]

MAX_N = 5_000_000


def burn(n: int) -> tuple[str, int]:
    """``(hex digest after n chained SHA-256 rounds, number of primes below n // 10)``."""
    digest = b"aquatope"
    for _ in range(n):
        digest = hashlib.sha256(digest).digest()
    limit = n // 10
    primes = 0
    for k in range(2, limit):
        d = 2
        while d * d <= k:
            if k % d == 0:
                break
            d += 1
        else:
            primes += 1
    return digest.hex(), primes


@json_handler
def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Burn CPU for ``request["n"]`` rounds."""
    n = field(request, "n", int)
    if not 1 <= n <= MAX_N:
        raise BadInput(f"field 'n' must be in 1..{MAX_N}, got {n}")
    started = time.process_time()
    digest, primes = burn(n)
    return {
        "n": n,
        "digest": digest,
        "primes": primes,
        "cpu_s": round(time.process_time() - started, 6),
    }
