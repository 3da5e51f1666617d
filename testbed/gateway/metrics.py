"""Prometheus exposition of the gateway's counters, with OpenFaaS's metric names.

Counters live as plain integers in each :class:`FunctionPool` (no locking or label look-ups
on the hot path); this collector renders them at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from testbed.core.latency import WORKFLOW_LATENCY_BUCKETS_S, LatencyHistogram
from testbed.gateway.pool import LATENCY_BUCKETS_S, FunctionPool

__all__ = ["GatewayCollector", "render_metrics"]


class GatewayCollector(Collector):
    """Yields OpenFaaS gateway metrics plus the testbed's own (cold starts, queue, replicas)."""

    def __init__(
        self,
        pools: Callable[[], Mapping[str, FunctionPool]],
        workflow_counts: Callable[[], Mapping[tuple[str, int], int]],
        workflow_latency: Callable[[], Mapping[str, LatencyHistogram]] = dict,
    ):
        self._pools = pools
        self._workflow_counts = workflow_counts
        self._workflow_latency = workflow_latency

    def collect(self) -> Iterator[Metric]:
        pools = self._pools()
        invocations = CounterMetricFamily(
            "gateway_function_invocation",
            "Function invocations by HTTP status code",
            labels=["function_name", "code"],
        )
        started = CounterMetricFamily(
            "gateway_function_invocation_started",
            "Function invocations that reached the gateway",
            labels=["function_name"],
        )
        cold = CounterMetricFamily(
            "gateway_function_cold_starts",
            "Invocations that arrived while no replica was ready",
            labels=["function_name"],
        )
        seconds = HistogramMetricFamily(
            "gateway_functions_seconds",
            "Function time taken (gateway view, includes queueing and cold start)",
            labels=["function_name"],
        )
        service_count = GaugeMetricFamily(
            "gateway_service_count", "Ready replicas per function", labels=["function_name"]
        )
        target = GaugeMetricFamily(
            "gateway_service_target_replicas", "Target replicas", labels=["function_name"]
        )
        replicas = GaugeMetricFamily(
            "gateway_function_replicas", "Replicas by state", labels=["function_name", "state"]
        )
        inflight = GaugeMetricFamily(
            "gateway_function_inflight",
            "Requests in the gateway (running and queued)",
            labels=["function_name"],
        )
        queued = GaugeMetricFamily(
            "gateway_function_queued", "Requests waiting for a replica", labels=["function_name"]
        )
        for name, pool in pools.items():
            for code, count in sorted(pool.codes.items()):
                invocations.add_metric([name, str(code)], count)
            started.add_metric([name], pool.started)
            cold.add_metric([name], pool.cold_starts)
            cumulative = 0
            buckets = []
            for bound, count in zip(LATENCY_BUCKETS_S, pool.buckets, strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", cumulative + pool.buckets[-1]))
            seconds.add_metric([name], buckets, pool.duration_sum_s)
            service_count.add_metric([name], pool.ready)
            target.add_metric([name], pool.target)
            replicas.add_metric([name, "ready"], pool.ready)
            replicas.add_metric([name, "starting"], pool.starting)
            inflight.add_metric([name], pool.active + pool.queued)  # running + waiting
            queued.add_metric([name], pool.queued)
        workflows = CounterMetricFamily(
            "gateway_workflow_invocation",
            "Workflow invocations by HTTP status code",
            labels=["workflow_name", "code"],
        )
        for (workflow, code), count in sorted(self._workflow_counts().items()):
            workflows.add_metric([workflow, str(code)], count)
        workflow_seconds = HistogramMetricFamily(
            "gateway_workflow_seconds",
            "Workflow time taken end to end (failed requests only in the +Inf bucket)",
            labels=["workflow_name"],
        )
        for workflow, hist in sorted(self._workflow_latency().items()):
            cumulative = 0
            buckets = []
            for bound, count in zip(WORKFLOW_LATENCY_BUCKETS_S, hist.counts, strict=False):
                if count:  # a bucket left out has the cumulative count of the one below it
                    cumulative += count
                    buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", cumulative + hist.counts[-1]))
            workflow_seconds.add_metric([workflow], buckets, 0.0)
        yield from (invocations, started, cold, seconds, service_count, target, replicas)
        yield from (inflight, queued, workflows, workflow_seconds)


def render_metrics(collector: GatewayCollector) -> bytes:
    """Prometheus text exposition of ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
