"""Synthetic workflow-sizing problems with a known feasible optimum.

Each problem is a layered DAG of functions (every function of a layer runs in parallel and
the next layer waits for all of them), with per-function latency and cost models shaped like
measured serverless functions:

* latency falls with CPU like Amdahl's law up to the threads the function can use, then stays
  flat (``serial_s + work_core_s / min(cpu, threads)``);
* memory below the function's working set slows it down (GC, page cache, swapping); memory
  below its hard need is never proposed (the space is floored there) and is an OOM when
  evaluated anyway;
* the tail latency of the workflow is the critical path of the per-function tail latencies;
  a measurement adds multiplicative log-normal noise;
* cost per invocation is DESIGN.md §8's decoupled price of reserved resources, idle included:
  each function keeps ``rate · latency / utilisation`` busy replicas plus one idle warm one,
  so cost per invocation is ``price · (latency / utilisation + 1 / rate)``.

Because latency and cost separate per function and layers compose by ``max`` and ``+``, the
exact optimum is computed by dynamic programming over a fine latency grid (see
:meth:`SizingProblem.optimum`), which gives tests and benchmarks a ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from scheduler.configure.base import Measurement
from scheduler.configure.space import Configuration, FunctionConfig, SearchSpace
from testbed.core.platform import QoS, Stage, Workflow
from testbed.core.prices import CPU_USD_PER_CORE_S, MEMORY_USD_PER_GIB_S

__all__ = [
    "PROBLEMS",
    "FunctionModel",
    "SizingProblem",
    "chain_problem",
    "heterogeneous_problem",
    "ml_pipeline_problem",
    "problem_by_name",
    "social_compose_problem",
]


def price_usd_per_s(cpu_cores: np.ndarray | float, memory_mb: np.ndarray | float) -> np.ndarray:
    """Decoupled price of one replica alive for one second (DESIGN.md §8)."""
    return (
        np.asarray(cpu_cores) * CPU_USD_PER_CORE_S
        + np.asarray(memory_mb) / 1024.0 * MEMORY_USD_PER_GIB_S
    )


@dataclass(frozen=True)
class FunctionModel:
    """Latency model of one function.

    Args:
        name: function name.
        serial_s: latency that no CPU helps (I/O, interpreter overhead), seconds.
        work_core_s: CPU work per request at one core, core-seconds.
        threads: cores the function can use in parallel.
        memory_need_mb: below this the function is OOM-killed (the space floors here).
        working_set_mb: below this (and above the need) it slows down.
        memory_penalty: slow-down factor at the need, relative to the working set (e.g.
            0.5 = 50% slower at ``memory_need_mb``), growing quadratically towards it.
    """

    name: str
    serial_s: float
    work_core_s: float
    threads: float = 1.0
    memory_need_mb: int = 128
    working_set_mb: int = 256
    memory_penalty: float = 0.5

    def latency_s(self, cpu_cores: np.ndarray | float, memory_mb: np.ndarray | float) -> np.ndarray:
        """Tail latency of one call (seconds); ``inf`` below the memory need (OOM)."""
        cpu = np.asarray(cpu_cores, dtype=float)
        mem = np.asarray(memory_mb, dtype=float)
        base = self.serial_s + self.work_core_s / np.minimum(cpu, self.threads)
        span = max(self.working_set_mb - self.memory_need_mb, 1)
        short = np.clip((self.working_set_mb - mem) / span, 0.0, None)
        slow = 1.0 + self.memory_penalty * short**2
        return np.where(mem < self.memory_need_mb, np.inf, base * slow)


@dataclass(frozen=True)
class SizingProblem:
    """A layered workflow with per-function models, a QoS target and a load.

    Args:
        name: problem (workflow) name.
        layers: function names per layer; layers run one after another, functions in a
            layer in parallel.
        models: latency model per function.
        qos_target_s: the tail-latency target (seconds).
        rate_rps: representative load (requests per second) for the cost model.
        utilisation: target busy share of a replica (headroom for bursts).
        noise_rel: relative standard deviation of a latency measurement (log-normal).
        cost_noise_rel: relative standard deviation of a cost measurement.
        machine_cores: CPU cap of the space.
    """

    name: str
    layers: tuple[tuple[str, ...], ...]
    models: Mapping[str, FunctionModel]
    qos_target_s: float
    rate_rps: float = 5.0
    utilisation: float = 0.7
    noise_rel: float = 0.04
    cost_noise_rel: float = 0.01
    machine_cores: float = 6.0
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(f for layer in self.layers for f in layer)

    def space(self) -> SearchSpace:
        """The search space: the paper's lattice, floored at each function's need."""
        return SearchSpace.for_functions(
            self.functions,
            machine_cores=self.machine_cores,
            memory_need_mb={f: m.memory_need_mb for f, m in self.models.items()},
        )

    def workflow(self) -> Workflow:
        """The problem as a workflow DAG (layer ``k+1`` runs after every stage of layer ``k``)."""
        stages: list[Stage] = []
        prev: tuple[str, ...] = ()
        for layer in self.layers:
            stages += [Stage(name=f, function=f, after=prev) for f in layer]
            prev = layer
        return Workflow(self.name, QoS(target_s=self.qos_target_s), tuple(stages))

    def _replica_s(self, f: str, cpu: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """Replica-seconds per invocation: busy at the target utilisation plus one idle
        warm replica."""
        busy: np.ndarray = self.models[f].latency_s(cpu, mem) / self.utilisation
        return busy + 1.0 / self.rate_rps

    def _function_cost(self, f: str, cpu: np.ndarray, mem: np.ndarray) -> np.ndarray:
        cost: np.ndarray = price_usd_per_s(cpu, mem) * self._replica_s(f, cpu, mem)
        return cost

    def true_latency_s(self, config: Configuration) -> float:
        """Noise-free tail latency of the workflow (seconds; inf on OOM)."""
        total = 0.0
        for layer in self.layers:
            total += max(
                float(self.models[f].latency_s(config[f].cpu_cores, config[f].memory_mb))
                for f in layer
            )
        return total

    def true_cost_usd(self, config: Configuration) -> float:
        """Noise-free cost per invocation (USD)."""
        return float(
            sum(
                self._function_cost(f, np.array(config[f].cpu_cores), np.array(config[f].memory_mb))
                for f in self.functions
            )
        )

    def evaluate(self, config: Configuration, rng: np.random.Generator) -> Measurement:
        """A noisy measurement of ``config`` (OOM → failed, latency at 10× the target)."""
        latency = self.true_latency_s(config)
        if not math.isfinite(latency):
            return Measurement(
                cost_usd=self.true_cost_usd_floor(config),
                latency_s=10 * self.qos_target_s,
                failed=True,
                error_rate=1.0,
                detail="OOM",
                stage_replica_s=dict.fromkeys(self.functions, 1.0 / self.rate_rps),
            )
        stage = {
            f: float(self.models[f].latency_s(config[f].cpu_cores, config[f].memory_mb))
            * math.exp(rng.normal(0.0, self.noise_rel))
            for f in self.functions
        }
        path = sum(max(stage[f] for f in layer) for layer in self.layers)
        noisy = path * math.exp(rng.normal(0.0, self.noise_rel / 2))
        cost_noise = math.exp(rng.normal(0.0, self.cost_noise_rel))
        replica_s = {
            f: float(self._replica_s(f, np.array(c.cpu_cores), np.array(c.memory_mb))) * cost_noise
            for f, c in config.items()
        }
        return Measurement(
            cost_usd=self.true_cost_usd(config) * cost_noise,
            latency_s=noisy,
            noise_s=latency * self.noise_rel,
            stage_latency_s=stage,
            stage_replica_s=replica_s,
        )

    def true_cost_usd_floor(self, config: Configuration) -> float:
        """Idle cost only (what an OOM-looping configuration still pays)."""
        return float(
            sum(
                price_usd_per_s(config[f].cpu_cores, config[f].memory_mb) / self.rate_rps
                for f in self.functions
            )
        )

    @cached_property
    def _fronts(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per function: lattice (cpu, memory) grids with their latency and cost, flattened."""
        space = self.space()
        out = {}
        for fs in space.functions:
            cpu, mem = np.meshgrid(fs.cpu_values, fs.memory_values, indexing="ij")
            cpu, mem = cpu.ravel(), mem.ravel().astype(float)
            lat = self.models[fs.name].latency_s(cpu, mem)
            cost = self._function_cost(fs.name, cpu, mem)
            out[fs.name] = (np.stack([cpu, mem], axis=1), lat, cost)
        return out

    def optimum(self, grid_points: int = 4000) -> tuple[Configuration, float]:
        """The cheapest configuration whose true latency meets the QoS target.

        Dynamic programming over a latency grid of ``grid_points`` steps up to the target:
        per-function latencies are rounded *up* to the grid, so the answer is feasible and
        within one grid step per layer of the exact optimum.

        Returns:
            (configuration, its true cost per invocation in USD).

        Raises:
            ValueError: nothing meets the target.
        """
        key = f"opt{grid_points}"
        if key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        q = self.qos_target_s
        step = q / grid_points
        n = grid_points + 1
        layer_cost: list[np.ndarray] = []
        layer_pick: list[dict[str, np.ndarray]] = []
        for layer in self.layers:
            total = np.zeros(n)
            picks: dict[str, np.ndarray] = {}
            for f in layer:
                _, lat, cost = self._fronts[f]
                bins = np.ceil(np.where(np.isfinite(lat), lat, 2 * q) / step - 1e-9).astype(int)
                best = np.full(n, np.inf)
                arg = np.full(n, -1)
                ok = bins < n
                order = np.lexsort((cost[ok], bins[ok]))
                idx_ok = np.flatnonzero(ok)[order]
                # cheapest point at each exact bin, then prefix minimum over bins
                for i in idx_ok[::-1]:
                    b = bins[i]
                    if cost[i] <= best[b]:
                        best[b], arg[b] = cost[i], i
                for b in range(1, n):
                    if best[b - 1] < best[b]:
                        best[b], arg[b] = best[b - 1], arg[b - 1]
                total = total + best
                picks[f] = arg
            layer_cost.append(total)
            layer_pick.append(picks)
        # series composition: min-plus convolution, remembering the split
        acc = layer_cost[0]
        splits: list[np.ndarray] = []
        for nxt in layer_cost[1:]:
            new = np.full(n, np.inf)
            arg = np.zeros(n, dtype=int)
            for t in range(n):
                cand = acc[: t + 1] + nxt[t::-1]
                a = int(np.argmin(cand))
                new[t], arg[t] = cand[a], a
            splits.append(arg)
            acc = new
        if not np.isfinite(acc[-1]):
            raise ValueError(f"{self.name}: no configuration meets {q} s")
        budgets = [0] * len(self.layers)
        t = n - 1
        for k in range(len(self.layers) - 1, 0, -1):
            a = int(splits[k - 1][t])
            budgets[k] = t - a
            t = a
        budgets[0] = t
        chosen: dict[str, FunctionConfig] = {}
        for k, layer in enumerate(self.layers):
            for f in layer:
                points, _, _ = self._fronts[f]
                i = int(layer_pick[k][f][budgets[k]])
                chosen[f] = FunctionConfig(float(points[i, 0]), int(points[i, 1]))
        config = Configuration.of({f: chosen[f] for f in self.functions})
        result = (config, self.true_cost_usd(config))
        self._cache[key] = result
        return result


def ml_pipeline_problem(*, qos_target_s: float = 1.2) -> SizingProblem:
    """ml-pipeline: image-processing → object-detection → {classifier-a, classifier-b}.

    Shaped after the functions' work (decode/resize in PIL on one thread; a small torch CNN
    that uses up to 4 threads; two small classifiers using 2): an estimate, not a measurement.
    """
    models = {
        "image-processing": FunctionModel(
            "image-processing", 0.02, 0.15, 1, memory_need_mb=192, working_set_mb=320
        ),
        "object-detection": FunctionModel(
            "object-detection",
            0.03,
            0.8,
            4,
            memory_need_mb=640,
            working_set_mb=1280,
            memory_penalty=0.8,
        ),
        "classifier-a": FunctionModel(
            "classifier-a", 0.01, 0.2, 2, memory_need_mb=384, working_set_mb=640
        ),
        "classifier-b": FunctionModel(
            "classifier-b", 0.01, 0.12, 2, memory_need_mb=320, working_set_mb=512
        ),
    }
    return SizingProblem(
        "ml-pipeline",
        (("image-processing",), ("object-detection",), ("classifier-a", "classifier-b")),
        models,
        qos_target_s=qos_target_s,
        rate_rps=2.0,
    )


def social_compose_problem(*, qos_target_s: float = 0.35) -> SizingProblem:
    """social-network compose-post: compose → {text, media} → store → {home, user} timelines."""
    f = FunctionModel
    models = {
        "compose-post": f("compose-post", 0.004, 0.012, 1, 128, 192),
        "text-filter": f("text-filter", 0.002, 0.03, 1, 128, 256),
        "media-filter": f("media-filter", 0.005, 0.06, 1, 192, 384, memory_penalty=0.7),
        "store-post": f("store-post", 0.012, 0.015, 1, 128, 320),
        "write-home-timeline": f("write-home-timeline", 0.006, 0.025, 1, 128, 256),
        "write-user-timeline": f("write-user-timeline", 0.005, 0.018, 1, 128, 192),
    }
    return SizingProblem(
        "social-compose-post",
        (
            ("compose-post",),
            ("text-filter", "media-filter"),
            ("store-post",),
            ("write-home-timeline", "write-user-timeline"),
        ),
        models,
        qos_target_s=qos_target_s,
        rate_rps=20.0,
    )


def chain_problem(n_functions: int = 2, *, qos_target_s: float | None = None) -> SizingProblem:
    """A chain of ``n_functions`` CPU-bound functions (small and fast for tests)."""
    models: dict[str, FunctionModel] = {}
    for i in range(n_functions):
        work = 0.05 * (1 + (i % 3))
        threads = 1 + (i % 2)
        models[f"fn-{i}"] = FunctionModel(
            f"fn-{i}",
            0.005,
            work,
            threads,
            memory_need_mb=128 + 64 * (i % 4),
            working_set_mb=320 + 128 * (i % 3),
        )
    if qos_target_s is None:
        qos_target_s = 0.16 * n_functions
    return SizingProblem(
        f"chain-{n_functions}",
        tuple((name,) for name in models),
        models,
        qos_target_s=qos_target_s,
        rate_rps=5.0,
    )


def heterogeneous_problem(*, qos_target_s: float = 0.6, shards: int = 4) -> SizingProblem:
    """A workflow whose stages want very different shapes: sizing matters here.

    ``ingest`` is memory-bound with light CPU (an 8 GiB working set, 10 ms of CPU work);
    ``shards`` parallel ``shard-k`` stages are CPU-bound with small memory (0.8 core-seconds
    each, using up to 4 cores, 160 MB working set); ``render`` saturates past one core (one
    thread). Power-tuning's CPU ∝ memory coupling must buy ~4.6 cores with ingest's memory and
    ~3.5 GiB of memory with each shard's two cores; per-function greedy steps down from a
    uniform level cannot undo that. Synthetic (shaped after the workload classes, not measured).
    """
    f = FunctionModel
    models = {
        "ingest": f("ingest", 0.02, 0.01, 1, 6144, 8192, memory_penalty=3.0),
        **{
            f"shard-{k}": f(f"shard-{k}", 0.005, 0.8, 4, 128, 160, memory_penalty=0.3)
            for k in range(shards)
        },
        "render": f("render", 0.01, 0.12, 1, 192, 320),
    }
    return SizingProblem(
        "heterogeneous",
        (("ingest",), tuple(f"shard-{k}" for k in range(shards)), ("render",)),
        models,
        qos_target_s=qos_target_s,
        rate_rps=5.0,
    )


PROBLEMS = ("ml-pipeline", "social-compose-post", "heterogeneous")


def problem_by_name(name: str) -> SizingProblem:
    """``ml-pipeline``, ``social-compose-post``, ``heterogeneous`` or ``chain-N``.

    Raises:
        KeyError: unknown name.
    """
    if name == "heterogeneous":
        return heterogeneous_problem()
    if name == "ml-pipeline":
        return ml_pipeline_problem()
    if name in ("social-compose-post", "social-network", "compose-post"):
        return social_compose_problem()
    if name.startswith("chain-") and name[6:].isdigit():
        return chain_problem(int(name[6:]))
    raise KeyError(f"unknown synthetic problem {name!r}; known: {', '.join(PROBLEMS)}, chain-N")
