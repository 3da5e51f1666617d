"""Measure a simulator profile on a live platform (``aquatope profile``).

Everything goes through the :class:`~testbed.core.platform.Platform` API, so the same code
profiles the ``local`` and ``docker`` backends (and, in tests, the simulator itself). Per
function it measures:

* **service time** at the reference (no CPU limit, one call at a time): the gateway's
  ``X-Duration-Seconds`` of warm calls;
* **gateway overhead**: the client's latency minus the gateway's ``X-Duration-Seconds``;
* **CPU scaling**: median service time under each CPU limit (``set_limits``) over the
  reference median, when the backend enforces limits;
* **concurrency scaling**: median service time with ``k`` calls at once on one replica;
* **idle scaling** (when asked for: ``idle_levels``): median service time of a call after
  the replica sat idle ``s`` seconds, over the back-to-back reference;
* **cold start**: scale to zero, call, and read the new replica's start-up time
  (``ready_at - started_at``) from ``status()``;
* **start storm**: scale from zero to ``k`` replicas at once (``k``: four per host core) and
  fit the cores one start keeps busy (:func:`fit_start_cores`);
* **memory**: the peak RSS of a process that loads the handler and serves the payloads
  (measured in a child process, since the Platform API does not report memory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform as pyplatform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.core.config import Limits
from testbed.core.errors import PlatformError
from testbed.core.host import usable_cores
from testbed.core.platform import FunctionSpec, InvokeResult, Platform
from testbed.sim.conditions import current_conditions
from testbed.sim.distributions import Distribution
from testbed.sim.profile import FunctionProfile, Profile

__all__ = [
    "ProfileSettings",
    "fit_start_cores",
    "machine_facts",
    "measure_peak_rss_mb",
    "profile_functions",
    "start_storm",
    "trim_outliers",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class ProfileSettings:
    """How much to measure.

    Args:
        n_service: warm calls at the reference and at each level (in rounds of 5,
            interleaved across levels).
        n_cold: cold starts per function.
        outlier_iqr: samples above ``q3 + outlier_iqr * IQR`` (a stall of the shared host,
            not the function) are dropped from service and cold-start samples; 0 keeps all.
        cpu_levels: CPU limits (cores) to measure service time under.
        concurrency_levels: concurrent calls per replica to measure (1 is the reference).
        warmup: calls discarded after each change.
        ready_timeout_s: how long to wait for a replica to appear or go.
        storm_replicas: replicas asked for at once in the start storm (None: four per core
            of this host; 0 or 1: no storm, ``cold_start_cores`` stays 1).
        idle_levels: seconds the replica is left idle before a call, to measure how much
            slower a call runs after a pause than back to back (empty: not measured). On an
            otherwise idle host this is the upper bound: read-post took 0.36 ms back to
            back and 16 ms after 3 s (45x), against 2-4x in a live run, where the load
            generator and gateway keep the host awake; ``aquatope profile-from-runs`` fits
            the table under a run's own load.
        idle_calls: calls after each pause.
    """

    n_service: int = 30
    n_cold: int = 8
    cpu_levels: tuple[float, ...] = (0.25, 0.5, 1.0)
    concurrency_levels: tuple[int, ...] = (1, 2, 4)
    warmup: int = 10
    ready_timeout_s: float = 60.0
    outlier_iqr: float = 3.0
    storm_replicas: int | None = None
    idle_levels: tuple[float, ...] = ()
    idle_calls: int = 4

    def storm_size(self) -> int:
        """Replicas in the start storm (0: none)."""
        if self.storm_replicas is None:
            return 4 * usable_cores()
        return self.storm_replicas if self.storm_replicas > 1 else 0


def fit_start_cores(*, alone_s: float, storm_s: float, replicas: int, cores: float) -> float:
    """The cores one replica start keeps busy, from a start storm.

    Under processor sharing, ``k`` starts of ``d`` cores each on ``c`` cores all take
    ``T1 x max(1, k d / c)`` where one alone takes ``T1``; so ``d = c x Tk / (k x T1)``.
    A storm no slower than one start alone gives ``c / k`` (starts that do not compete
    for the CPU, as far as ``k`` of them show). Clipped to ``[0.05, c]``.

    Example:
        >>> fit_start_cores(alone_s=1.8, storm_s=8.2, replicas=8, cores=2)
        1.139
    """
    if alone_s <= 0 or storm_s <= 0 or replicas < 2 or not 0 < cores < math.inf:
        raise ValueError("start times, replicas (>= 2) and cores must be positive and finite")
    return round(min(max(cores * storm_s / (replicas * alone_s), 0.05), cores), 3)


def start_storm(
    platform: Platform, names: Sequence[str], replicas: int, *, timeout_s: float
) -> dict[str, list[float]]:
    """Scale every function in ``names`` from zero to ``replicas`` at once and return each
    new replica's start (asked for until ready, seconds), per function. The functions are
    left at ``replicas``."""
    for name in names:
        platform.scale(name, replicas=0)
    for name in names:
        _wait(platform, name, lambda s: not s.replicas, timeout_s)
    for name in names:
        platform.scale(name, replicas=replicas)
    for name in names:
        _wait(platform, name, lambda s: s.replicas_ready >= replicas, timeout_s)
    return {
        name: sorted(
            r.ready_at - r.started_at
            for r in platform.status(name).replicas
            if r.ready_at is not None and r.started_at is not None
        )
        for name in names
    }


def machine_facts() -> dict[str, Any]:
    """``uname -a``, CPU model and count, Python version: where a profile was measured."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "uname": " ".join(os.uname()),
        "cpu_model": model or pyplatform.processor(),
        "cpu_count": os.cpu_count(),
        "python": pyplatform.python_version(),
    }


def _header(result: InvokeResult, name: str) -> str | None:
    lower = name.lower()
    for key, value in result.headers.items():
        if key.lower() == lower:
            return value
    return None


def _gateway_s(result: InvokeResult) -> float:
    value = _header(result, "X-Duration-Seconds")
    return float(value) if value is not None else result.duration_s


def _pause(platform: Platform, seconds: float) -> None:
    """Leave the platform idle for ``seconds`` (a platform with its own clock is advanced)."""
    clock = getattr(platform, "clock", None)
    if clock is not None:
        clock.sleep_until(clock.now() + seconds)
    else:
        time.sleep(seconds)


# idle time of the back-to-back reference calls: the idle table's first level
_BACK_TO_BACK_S = 0.01


def _wait(platform: Platform, name: str, ok: Callable[[Any], bool], timeout_s: float) -> None:
    """Poll ``status`` until ``ok``; a platform with its own clock (the sim) is advanced."""
    clock = getattr(platform, "clock", None)
    now = clock.now if clock is not None else time.monotonic
    deadline = now() + timeout_s
    while True:
        status = platform.status(name)
        if ok(status):
            return
        if now() > deadline:
            raise PlatformError(f"{name}: replicas did not reach the wanted state in {timeout_s}s")
        _pause(platform, 0.05)


def trim_outliers(values: Sequence[float], iqr_k: float) -> tuple[list[float], int]:
    """Drop samples above ``q3 + iqr_k * IQR`` (Tukey's far-out fence).

    Args:
        values: measured durations.
        iqr_k: fence width in interquartile ranges; ``<= 0`` keeps everything.

    Returns:
        The kept samples (in their order) and how many were dropped. Fewer than 4 samples, or
        a fence that would drop more than a fifth of them, keeps everything.
    """
    kept = list(values)
    if iqr_k <= 0 or len(kept) < 4:
        return kept, 0
    q1, _, q3 = statistics.quantiles(kept, n=4, method="inclusive")
    fence = q3 + iqr_k * (q3 - q1)
    trimmed = [v for v in kept if v <= fence]
    if len(kept) - len(trimmed) > len(kept) // 5:
        return kept, 0
    return trimmed, len(kept) - len(trimmed)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


class _Caller:
    """Invokes one function with payloads in rotation; records gateway and overhead times."""

    def __init__(self, platform: Platform, name: str, payloads: Sequence[bytes]) -> None:
        self.platform = platform
        self.name = name
        self.payloads = list(payloads) or [b"{}"]
        self.i = 0
        self.overhead_s: list[float] = []

    def call(self) -> InvokeResult:
        body = self.payloads[self.i % len(self.payloads)]
        self.i += 1
        result = self.platform.invoke(self.name, body)
        if not result.ok:
            raise PlatformError(
                f"{self.name}: profiling call answered {result.status_code}: {result.body[:200]!r}"
            )
        return result

    def warm(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            result = self.call()
            gateway = _gateway_s(result)
            out.append(gateway)
            self.overhead_s.append(max(0.0, result.duration_s - gateway))
        return out

    def concurrent(self, k: int, rounds: int) -> list[float]:
        out: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                value = _gateway_s(self.call())
            except BaseException as exc:  # re-raised below, on the caller's thread
                errors.append(exc)
                return
            with lock:
                out.append(value)

        for _ in range(rounds):
            threads = [threading.Thread(target=one) for _ in range(k)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
        return out


def _profile_one(
    platform: Platform,
    spec: FunctionSpec,
    payloads: Sequence[bytes],
    settings: ProfileSettings,
    log: Log,
) -> tuple[FunctionProfile, list[float], dict[str, Any]]:
    name = spec.name
    max_k = max(settings.concurrency_levels)
    reference = dataclasses.replace(
        spec,
        limits=Limits(memory_mb=spec.limits.memory_mb),
        max_inflight=max(max_k, 1),
        labels={k: v for k, v in spec.labels.items() if not k.startswith("com.openfaas.scale")},
    )
    platform.deploy(reference)
    platform.scale(name, replicas=1)
    _wait(platform, name, lambda s: s.replicas_ready >= 1, settings.ready_timeout_s)
    caller = _Caller(platform, name, payloads)
    caller.warm(settings.warmup)
    memory = spec.limits.memory_mb

    # Levels are measured in interleaved rounds (reference, each CPU limit, each concurrency)
    # so that drift on a shared machine (warm-up, other load) hits every level alike.
    notes: dict[str, Any] = {}
    cpu_levels: list[float | None] = [None]
    platform.set_limits(name, Limits(cpu_cores=settings.cpu_levels[0], memory_mb=memory))
    status = platform.status(name)
    if status.limits_enforced:
        cpu_levels.extend(settings.cpu_levels)
    else:
        notes["cpu_scaling"] = f"limits not enforced: {status.limits_detail}"
        log(f"{name}: CPU limits are advisory here; no CPU scaling measured")
    conc_levels = [k for k in settings.concurrency_levels if k > 1]
    per_round = max(1, min(5, settings.n_service))
    rounds = max(1, -(-settings.n_service // per_round))
    by_cpu: dict[float | None, list[float]] = {level: [] for level in cpu_levels}
    by_k: dict[int, list[float]] = {k: [] for k in conc_levels}
    for _ in range(rounds):
        for level in cpu_levels:
            platform.set_limits(name, Limits(cpu_cores=level, memory_mb=memory))
            caller.warm(1)  # the first call after a change is discarded
            by_cpu[level].extend(caller.warm(per_round))
        for k in conc_levels:
            by_k[k].extend(caller.concurrent(k, max(1, per_round // k)))
    platform.set_limits(name, Limits(memory_mb=memory))
    service, dropped = trim_outliers(by_cpu[None], settings.outlier_iqr)
    if dropped:
        notes["service_outliers_dropped"] = dropped
    ref_median = _median(service)
    log(f"{name}: service p50 {ref_median * 1000:.2f} ms over {len(service)} calls")
    # A limit or a neighbour call cannot make a call faster: factors below 1 are noise.
    cpu = [(float(lv), max(1.0, _median(v) / ref_median)) for lv, v in by_cpu.items() if lv]
    concurrency = [(1.0, 1.0)] + [
        (float(k), max(1.0, _median(v) / ref_median)) for k, v in by_k.items()
    ]
    log(
        f"{name}: cpu factors {', '.join(f'{c:g}:{f:.2f}' for c, f in cpu) or 'n/a'}; "
        f"concurrency factors {', '.join(f'{k:g}:{f:.2f}' for k, f in concurrency[1:])}"
    )
    idle: list[tuple[float, float]] = []
    if settings.idle_levels and settings.idle_calls > 0:
        by_idle: dict[float, list[float]] = {level: [] for level in settings.idle_levels}
        for _ in range(settings.idle_calls):  # interleaved, like the levels above
            for level in settings.idle_levels:
                _pause(platform, level)
                by_idle[level].extend(caller.warm(1))
        idle = [(_BACK_TO_BACK_S, 1.0)] + [
            (float(level), max(1.0, _median(v) / ref_median)) for level, v in by_idle.items()
        ]
        log(f"{name}: after idle {', '.join(f'{lv:g} s:{f:.2f}' for lv, f in idle[1:])}")

    cold: list[float] = []
    for _ in range(settings.n_cold):
        platform.scale(name, replicas=0)
        _wait(platform, name, lambda s: not s.replicas, settings.ready_timeout_s)
        result = caller.call()
        startup = [
            r.ready_at - r.started_at
            for r in platform.status(name).replicas
            if r.ready_at is not None and r.state == "ready"
        ]
        cold.append(min(startup) if startup else max(0.0, _gateway_s(result) - ref_median))
    cold, dropped = trim_outliers(cold, settings.outlier_iqr)
    if dropped:
        notes["cold_start_outliers_dropped"] = dropped
    alone_s = _median(cold)
    log(f"{name}: cold start p50 {alone_s:.3f} s over {len(cold)}")
    start_cores = 1.0
    k = min(settings.storm_size(), reference.scale_bounds.max)
    if k > 1 and alone_s > 0:
        timeout_s = max(settings.ready_timeout_s, 3.0 * k * alone_s)
        storm = start_storm(platform, [name], k, timeout_s=timeout_s)[name]
        simulated = getattr(platform, "host_cores", None)  # the sim's host, not this one
        cores = float(simulated if simulated and math.isfinite(simulated) else usable_cores())
        start_cores = fit_start_cores(
            alone_s=alone_s, storm_s=_median(storm), replicas=k, cores=cores
        )
        notes["start_storm"] = {
            "replicas": k,
            "host_cores": cores,
            "median_s": round(_median(storm), 4),
            "max_s": round(max(storm), 4),
        }
        log(
            f"{name}: {k} starts at once p50 {_median(storm):.2f} s: "
            f"{start_cores:.2f} cores per start"
        )
    platform.remove(name)

    fp = FunctionProfile(
        service_s=Distribution.empirical(service),
        cold_start_s=Distribution.empirical(cold),
        cold_start_cores=start_cores,
        memory_mb=None,
        cpu_scaling=tuple(sorted(cpu)),
        concurrency_scaling=tuple(concurrency),
        idle_scaling=tuple(sorted(idle)),
        extra={"notes": notes} if notes else {},
    )
    return fp, caller.overhead_s, notes


# VmHWM (the peak RSS of this process image), not ru_maxrss: Linux carries ru_maxrss over
# from the forking parent across exec.
_RSS_SCRIPT = """
import json, sys
from testbed.runner.handler import Event, call_handler, load_handler
handler = load_handler(sys.argv[1])
for line in sys.stdin.buffer.read().split(b"\\n\\0\\n"):
    if line:
        call_handler(handler, Event(body=line, headers={"Content-Type": "application/json"}))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"maxrss_kb": int(hwm)}))
"""


def measure_peak_rss_mb(handler_dir: str | Path, payloads: Sequence[bytes]) -> float:
    """Peak RSS (MiB) of a fresh process that loads the handler and serves ``payloads``.

    Raises:
        PlatformError: the child process failed.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(handler_dir)],
        input=b"\n\0\n".join(payloads),
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    if proc.returncode != 0:
        raise PlatformError(f"{handler_dir}: memory probe failed: {proc.stderr.decode()[-300:]}")
    return float(json.loads(proc.stdout.decode().strip().splitlines()[-1])["maxrss_kb"]) / 1024


def profile_functions(
    platform: Platform,
    specs: Sequence[FunctionSpec],
    payloads: Mapping[str, Sequence[bytes]],
    *,
    settings: ProfileSettings | None = None,
    provenance: Mapping[str, Any] | None = None,
    measure_memory: bool = True,
    log: Log = lambda _msg: None,
) -> Profile:
    """Measure every function in ``specs`` on ``platform`` and return the profile.

    Args:
        platform: a live platform (``connect("local")``); functions are deployed, measured
            and removed one at a time.
        specs: the functions (e.g. from ``stack.yml``).
        payloads: request bodies per function name (cycled through).
        settings: how much to measure.
        provenance: extra facts stored in the profile (backend, command).
        measure_memory: also measure each handler's peak RSS in a child process.
        log: progress lines.

    Raises:
        PlatformError: no function could be profiled (a function that fails is left out
            and named under ``provenance.failed``).
    """
    settings = settings or ProfileSettings()
    conditions_start = current_conditions()
    functions: dict[str, FunctionProfile] = {}
    overhead: list[float] = []
    notes: dict[str, Any] = {}
    started = time.time()
    failed: dict[str, str] = {}
    for spec in specs:
        body = list(payloads.get(spec.name, [b"{}"]))
        try:
            fp, over, fn_notes = _profile_one(platform, spec, body, settings, log)
        except PlatformError as exc:
            failed[spec.name] = str(exc)
            log(f"{spec.name}: FAILED, left out of the profile: {exc}")
            with contextlib.suppress(PlatformError):
                platform.remove(spec.name)
            continue
        if measure_memory and spec.handler:
            rss = measure_peak_rss_mb(spec.handler, body)
            fp = dataclasses.replace(fp, memory_mb=round(rss, 1))
            log(f"{spec.name}: peak RSS {rss:.0f} MiB")
        functions[spec.name] = fp
        overhead.extend(over)
        if fn_notes:
            notes[spec.name] = fn_notes
    facts = {
        "machine": machine_facts(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "settings": dataclasses.asdict(settings),
        "conditions": {"start": conditions_start, "end": current_conditions()},
        **dict(provenance or {}),
    }
    if notes:
        facts["notes"] = notes
    if failed:
        facts["failed"] = failed
    if not functions:
        raise PlatformError(f"no function could be profiled: {failed}")
    return Profile(
        functions=functions,
        gateway_overhead_s=Distribution.empirical(overhead or [0.0]),
        provenance=facts,
    )
