"""Evaluators: measure one configuration → (cost, tail latency, noise). The only I/O here.

* :class:`ProblemEvaluator` — a synthetic problem from :mod:`scheduler.problems` (no I/O).
* :class:`LiveEvaluator` — a short open-loop load run of the workflow on a real backend
  through a :class:`~testbed.core.platform.Platform` (``local``, ``docker``, ``openfaas``): apply
  the limits, scale, warm up, send ``requests`` at ``rate_rps`` from a thread pool, read the
  replica counts from ``metrics()`` while it runs.
* :class:`SimEvaluator` — the same load run inside the simulator (``testbed.sim``), in
  simulated time: fast, and marked ``sim`` in every measurement's ``detail``.

Every evaluator reports the tail latency at the workflow's QoS percentile, with failed
requests counted at the timeout (errors are violations), its bootstrap standard error as
noise, and DESIGN.md §8's decoupled cost (reserved CPU and memory × time alive for every
replica, busy or idle) per invocation. The scheduler package imports nothing from
``testbed`` beyond the platform types, so the simulator is driven through its own methods
(``run_trace``, ``results``) on the platform object it is handed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from scheduler.configure.base import Measurement
from scheduler.configure.space import Configuration
from testbed.core.errors import PlatformError
from testbed.core.platform import Platform, Workflow
from testbed.core.prices import decoupled_usd_per_s

__all__ = [
    "Evaluator",
    "LiveEvaluator",
    "ProblemEvaluator",
    "SimEvaluator",
    "summarise_latencies",
]

BOOTSTRAP_RESAMPLES = 200


@runtime_checkable
class Evaluator(Protocol):
    """Measures configurations.

    Attributes:
        name: short name (``synthetic``, ``local``, ``sim``...), shown in progress output.
    """

    name: str

    def evaluate(self, config: Configuration) -> Measurement:
        """Apply ``config``, measure, return cost per invocation and tail latency."""
        ...


def replica_price_usd_per_s(cpu_cores: float, memory_mb: float) -> float:
    """Decoupled price of one replica alive for one second (DESIGN.md §8)."""
    return decoupled_usd_per_s(cpu_cores, memory_mb)


def summarise_latencies(
    latencies_s: Sequence[float],
    ok: Sequence[bool],
    *,
    percentile: float,
    timeout_s: float,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Tail latency, its bootstrap standard error, and the error rate.

    Failed requests count at ``timeout_s``, so errors push the tail up (they are
    violations). Outliers are kept (a tail is made of them) but capped at the timeout.

    Returns:
        (percentile latency in s, standard error in s, share of failed requests).

    Raises:
        ValueError: no requests.
    """
    lat = np.asarray(latencies_s, dtype=float)
    good = np.asarray(ok, dtype=bool)
    if lat.size == 0:
        raise ValueError("no requests to summarise")
    lat = np.where(good & np.isfinite(lat), np.minimum(lat, timeout_s), timeout_s)
    tail = float(np.percentile(lat, percentile))
    rng = np.random.default_rng(seed)
    boots = np.percentile(
        lat[rng.integers(0, lat.size, size=(BOOTSTRAP_RESAMPLES, lat.size))], percentile, axis=1
    )
    return tail, float(np.std(boots)), float(1.0 - good.mean())


class ProblemEvaluator:
    """Noisy measurements of a synthetic :class:`~scheduler.problems.SizingProblem`.

    Args:
        problem: the problem.
        seed: seed of the measurement noise.
    """

    name = "synthetic"

    def __init__(self, problem: Any, *, seed: int = 0) -> None:
        self.problem = problem
        self._rng = np.random.default_rng(seed)

    def evaluate(self, config: Configuration) -> Measurement:
        """One noisy measurement (``detail`` says it is synthetic)."""
        m = self.problem.evaluate(config, self._rng)
        detail = "synthetic" + (f", {m.detail}" if m.detail else "")
        measured: Measurement = replace(m, detail=detail)
        return measured


class _LoadRun:
    """Settings shared by the live and simulated load runs."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        rate_rps: float,
        requests: int,
        warmup_requests: int,
        replicas: int,
        timeout_s: float | None,
        max_error_rate: float | None,
        seed: int,
    ) -> None:
        if not rate_rps > 0:
            raise ValueError(f"rate_rps must be positive, got {rate_rps}")
        if requests < 5:
            raise ValueError(f"requests must be >= 5 for a tail, got {requests}")
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.workflow = workflow
        self.rate_rps = rate_rps
        self.requests = requests
        self.warmup_requests = warmup_requests
        self.replicas = replicas
        self.percentile = workflow.qos.percentile
        self.timeout_s = timeout_s if timeout_s is not None else 10 * workflow.qos.target_s
        self.max_error_rate = (
            max_error_rate if max_error_rate is not None else (100 - self.percentile) / 100
        )
        self.seed = seed
        self._runs = 0

    def arrivals_s(self) -> np.ndarray:
        """Poisson send offsets (seconds from the start), seeded per run."""
        self._runs += 1
        rng = np.random.default_rng(self.seed * 100_003 + self._runs)
        return np.cumsum(rng.exponential(1.0 / self.rate_rps, size=self.requests))

    def measurement(
        self,
        latencies: Sequence[float],
        ok: Sequence[bool],
        replica_seconds: Mapping[str, float],
        config: Configuration,
        detail: str,
        stage_samples: Mapping[str, Sequence[float]] | None = None,
    ) -> Measurement:
        stages = {
            f: float(np.percentile(v, self.percentile))
            for f, v in (stage_samples or {}).items()
            if len(v)
        }
        tail, noise, err = summarise_latencies(
            latencies, ok, percentile=self.percentile, timeout_s=self.timeout_s, seed=self._runs
        )
        total = sum(
            replica_seconds.get(f, 0.0) * replica_price_usd_per_s(c.cpu_cores, c.memory_mb)
            for f, c in config.items()
        )
        return Measurement(
            cost_usd=total / len(latencies),
            latency_s=tail,
            noise_s=noise,
            failed=err > self.max_error_rate,
            requests=len(latencies),
            error_rate=err,
            detail=detail + (f", {err:.0%} errors" if err else ""),
            stage_latency_s=stages if set(stages) == set(config.names) else {},
            stage_replica_s={f: replica_seconds.get(f, 0.0) / len(latencies) for f in config.names},
        )


class LiveEvaluator(_LoadRun):
    """A short open-loop load run of ``workflow`` on a live platform.

    Args:
        platform: a connected platform on which the workflow's functions are deployed.
        workflow: the workflow (its QoS percentile is the tail measured).
        rate_rps: representative request rate (Poisson arrivals).
        requests: requests measured per evaluation.
        warmup_requests: requests sent (sequentially, unmeasured) after applying limits.
        replicas: replicas per function during the run.
        payload: request body for the workflow.
        timeout_s: per-request timeout; failures count at this latency (default 10× QoS).
        max_error_rate: above this error share the trial is ``failed`` (default 1 − p).
        max_workers: sender threads (bounds concurrency of the open loop).
        ready_timeout_s: how long to wait for replicas after scaling.
        seed: seeds the arrival process.
        clock / sleep: injectable time source (tests); default ``time.monotonic``/``sleep``.
        name: shown in progress output and ``detail`` (e.g. ``local``).
    """

    def __init__(
        self,
        platform: Platform,
        workflow: Workflow,
        *,
        rate_rps: float = 5.0,
        requests: int = 60,
        warmup_requests: int = 3,
        replicas: int = 1,
        payload: bytes = b"",
        timeout_s: float | None = None,
        max_error_rate: float | None = None,
        max_workers: int = 16,
        ready_timeout_s: float = 60.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        name: str = "live",
    ) -> None:
        super().__init__(
            workflow,
            rate_rps=rate_rps,
            requests=requests,
            warmup_requests=warmup_requests,
            replicas=replicas,
            timeout_s=timeout_s,
            max_error_rate=max_error_rate,
            seed=seed,
        )
        self.platform = platform
        self.payload = payload
        self.max_workers = max_workers
        self.ready_timeout_s = ready_timeout_s
        self._clock = clock
        self._sleep = sleep
        self.name = name

    def _apply(self, config: Configuration) -> None:
        for name, cfg in config.items():
            self.platform.set_limits(name, cfg.to_limits())
            self.platform.scale(name, replicas=self.replicas)
        deadline = self._clock() + self.ready_timeout_s
        while True:
            statuses = [self.platform.status(n) for n in config.names]
            if all(s.replicas_ready >= self.replicas for s in statuses):
                return
            if self._clock() > deadline:
                raise PlatformError(
                    f"replicas not ready within {self.ready_timeout_s:.0f} s after applying "
                    f"{config}"
                )
            self._sleep(0.05)

    def _invoke(self) -> tuple[float, bool, dict[str, float]]:
        start = self._clock()
        try:
            result = self.platform.invoke(
                self.workflow.name, self.payload, workflow=True, timeout_s=self.timeout_s
            )
        except PlatformError:
            return self._clock() - start, False, {}
        elapsed = self._clock() - start
        stages: dict[str, float] = {}
        if result.ok:
            try:
                body = json.loads(result.body)
                for row in body.get("stages", []):
                    fn = str(row["function"])
                    stages[fn] = max(stages.get(fn, 0.0), float(row["duration_s"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                stages = {}
        return elapsed, result.ok, stages

    def evaluate(self, config: Configuration) -> Measurement:
        """Apply ``config``, warm up, run the open loop, summarise.

        Raises:
            PlatformError: limits could not be applied or replicas never became ready.
        """
        self._apply(config)
        for _ in range(self.warmup_requests):
            self._invoke()
        offsets = self.arrivals_s()
        functions = config.names
        replica_s = dict.fromkeys(functions, 0.0)
        stop = threading.Event()

        def sample_replicas() -> None:
            last = self._clock()
            while not stop.is_set():
                snap = self.platform.metrics()
                now = self._clock()
                for f in functions:
                    fm = snap.functions.get(f)
                    if fm is not None:
                        replica_s[f] += (fm.replicas_ready + fm.replicas_starting) * (now - last)
                last = now
                stop.wait(0.25)

        sampler = threading.Thread(target=sample_replicas, daemon=True)
        start = self._clock()
        sampler.start()
        futures = []
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            for offset in offsets:
                delay = start + float(offset) - self._clock()
                if delay > 0:
                    self._sleep(delay)
                futures.append(pool.submit(self._invoke))
            results = [f.result() for f in futures]
        stop.set()
        sampler.join()
        if not any(replica_s.values()):  # metrics without replica gauges: charge the target
            elapsed = self._clock() - start
            replica_s = dict.fromkeys(functions, self.replicas * elapsed)
        per_stage: dict[str, list[float]] = {}
        for _, ok, stages in results:
            if ok:
                for fn, d in stages.items():
                    per_stage.setdefault(fn, []).append(d)
        return self.measurement(
            [r[0] for r in results],
            [r[1] for r in results],
            replica_s,
            config,
            self.name,
            stage_samples=per_stage,
        )


class SimEvaluator(_LoadRun):
    """The same load run in the simulator, in simulated time.

    Args:
        platform: a ``SimPlatform`` (from ``testbed.backends.connect("sim")``) on which the
            workflow's functions are deployed; driven through its ``run_trace`` and
            ``results`` methods.
        workflow: the workflow.
        settle_s: simulated seconds between applying limits and the first request (replicas
            start).
        Other arguments as :class:`LiveEvaluator`.
    """

    name = "sim"

    def __init__(
        self,
        platform: Any,
        workflow: Workflow,
        *,
        rate_rps: float = 5.0,
        requests: int = 200,
        warmup_requests: int = 5,
        replicas: int = 1,
        settle_s: float = 30.0,
        timeout_s: float | None = None,
        max_error_rate: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            workflow,
            rate_rps=rate_rps,
            requests=requests,
            warmup_requests=warmup_requests,
            replicas=replicas,
            timeout_s=timeout_s,
            max_error_rate=max_error_rate,
            seed=seed,
        )
        for attr in ("run_trace", "results", "now"):
            if not hasattr(platform, attr):
                raise TypeError(f"SimEvaluator needs the simulator platform (no {attr!r})")
        self.platform = platform
        self.settle_s = settle_s

    def evaluate(self, config: Configuration) -> Measurement:
        """Apply ``config``, simulate warm-up and the measured run, summarise."""
        sim = self.platform
        for name, cfg in config.items():
            sim.set_limits(name, cfg.to_limits())
            sim.scale(name, replicas=self.replicas)
        t = float(sim.now)
        warm = t + self.settle_s + np.arange(self.warmup_requests) * max(1.0, 1 / self.rate_rps)
        start = float(warm[-1] + 2.0) if len(warm) else t + self.settle_s
        times = start + self.arrivals_s()
        end = float(times[-1]) + 1e-6
        arrivals = [(float(x), self.workflow.name) for x in warm]
        arrivals += [(float(x), self.workflow.name) for x in times]
        results = sim.run_trace(arrivals, end, tick_s=1.0)
        req = results.requests
        measured = req[
            (req["intended_s"] >= start - 1e-9) & (req["workflow"] == self.workflow.name)
        ]
        tl = results.timeline
        tl = tl[(tl["t_s"] >= start - 1.0) & (tl["t_s"] <= end + 1.0)]
        replica_s: dict[str, float] = {}
        for f in config.names:
            rows = tl[tl["function"] == f].sort_values("t_s")
            if len(rows) >= 2:
                alive = (rows["replicas_ready"] + rows["replicas_starting"]).to_numpy(float)
                dt = np.diff(rows["t_s"].to_numpy(float))
                replica_s[f] = float(np.sum(alive[:-1] * dt))
            else:
                replica_s[f] = self.replicas * (end - start)
        if measured.empty:
            raise PlatformError(f"the simulator answered none of {len(times)} requests")
        st = results.stages
        st = st[st["request_id"].isin(measured.loc[measured["ok"], "request_id"])]
        per_stage = {
            str(fn): grp.groupby("request_id")["duration_s"].max().to_numpy(float).tolist()
            for fn, grp in st.groupby("function")
        }
        return self.measurement(
            measured["latency_s"].to_numpy(float).tolist(),
            measured["ok"].to_numpy(bool).tolist(),
            replica_s,
            config,
            "sim",
            stage_samples=per_stage,
        )
