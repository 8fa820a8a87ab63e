"""Prometheus metrics: requests by route and status, batching and model timings, queue depth."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """One registry per application, so apps (and tests) never share counters."""

    def __init__(self) -> None:
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
        self.in_flight = Gauge("tinyzoo_http_in_flight", "requests being handled", registry=r)
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
            "tinyzoo_queue_depth", "inputs waiting per model", ["model"], registry=r
        )
        self.model_info = Info("tinyzoo_model", "served models", ["model"], registry=r)

    def observe_drop(self, model: str, count: int) -> None:
        self.dropped.labels(model).inc(count)

    def observe_batch(self, model: str, size: int, wait_s: float, model_s: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.queue_wait.labels(model).observe(wait_s)
        self.model_time.labels(model).observe(model_s)
