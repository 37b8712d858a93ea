"""Prometheus metrics of one server, in a registry of its own (several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServingMetrics:
    """Requests per route, latency, tokens, queue depth and batch sizes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, engine):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("gag_requests", "Requests answered or refused, per endpoint, route and status.",
                                ["endpoint", "route", "status"], registry=registry)
        self.latency = Histogram("gag_request_latency_seconds", "Time from arrival to the last token.",
                                 ["endpoint", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.completion_tokens = Counter("gag_generated_tokens", "Completion tokens generated, per route.",
                                         ["route"], registry=registry)
        self.prompt_tokens = Counter("gag_prompt_tokens", "Base-prompt tokens read, per route.", ["route"],
                                     registry=registry)
        self.queue_depth = Gauge("gag_queue_depth", "Requests waiting for the worker.", registry=registry)
        self.queue_depth.set_function(lambda: engine.queue_depth)
        self.batch_size = Histogram("gag_batch_size", "Requests per generate call.", buckets=BATCH_BUCKETS,
                                    registry=registry)
        engine.add_batch_listener(self.batch_size.observe)

    def answered(self, endpoint: str, route: str, answer, seconds: float) -> None:
        self.requests.labels(endpoint, route, "200").inc()
        self.latency.labels(endpoint, route).observe(seconds)
        self.completion_tokens.labels(route).inc(answer.completion_tokens)
        self.prompt_tokens.labels(route).inc(answer.prompt_tokens)

    def refused(self, endpoint: str, status: int, route: str = "none") -> None:
        self.requests.labels(endpoint, route, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
