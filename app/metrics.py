"""Prometheus metrics: requests by route and status, batching and model timings, queue depth.

Two modes, chosen by prometheus-client when it is imported: with ``PROMETHEUS_MULTIPROC_DIR``
set (``python -m app`` sets it for several workers) every value is written to a file per
process in that directory and a scrape, whichever worker answers it, reads and sums them all;
without it values live in memory and a scrape reads this app's own registry.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's own switch: set, it writes every value to a file per process there."""


class Metrics:
    """One registry per application, so apps (and tests) never share counters.

    Every metric works in both modes: no ``Info`` and no ``Gauge.set_function``, which
    multiprocess mode cannot collect. Gauges say how workers' values combine: ``livesum`` for
    what adds up across live workers (requests in flight, queued inputs), ``livemax`` for the
    served models (each worker serves the same ones). Counters and histograms are summed over
    every worker that ever ran, so they never go backwards when one is replaced.
    """

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tinyzoo_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "tinyzoo_http_request_duration_seconds",
            "HTTP latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "tinyzoo_http_in_flight",
            "requests being handled",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "tinyzoo_batch_size",
            "inputs per model batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "tinyzoo_queue_wait_seconds",
            "oldest input's wait in a batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_time = Histogram(
            "tinyzoo_model_seconds",
            "model time per batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dropped = Counter(
            "tinyzoo_dropped_inputs",
            "queued inputs dropped unrun: client gone or deadline passed",
            ["model"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "tinyzoo_queue_depth",
            "inputs waiting per model",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        # The series an Info would expose (``tinyzoo_model_info{...} 1``, labels in its order).
        self.model_info = Gauge(
            "tinyzoo_model_info",
            "served models: 1 for the version each model serves, 0 for one it served before",
            ["architecture", "parameters", "device", "weights_sha256", "model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_loads = Counter(
            "tinyzoo_model_loads",
            "model versions loaded through the repository routes, by outcome",
            ["model", "outcome"],
            registry=r,
        )

    def observe_drop(self, model: str, count: int) -> None:
        self.dropped.labels(model).inc(count)

    def observe_batch(self, model: str, size: int, wait_s: float, model_s: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.queue_wait.labels(model).observe(wait_s)
        self.model_time.labels(model).observe(model_s)

    def exposition(self) -> bytes:
        """The Prometheus text of this app, or in multiprocess mode the sum over all workers."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """At shutdown in multiprocess mode: take this worker's live gauges out of the sums.

        Its counters and histograms stay, so totals do not drop. A worker that dies without
        shutting down (killed, out of memory) cannot do this, and uvicorn has no public hook
        for its supervisor to do it instead: its in-flight and queued counts stay in the
        ``livesum`` gauges until the launcher restarts, which clears the directory.
        """
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
