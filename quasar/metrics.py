"""Prometheus metrics of the validator neuron and the miner's inference server.

The API has its own (`validator_api.metrics`, request count and latency by route and status). Here:

* `ValidatorMetrics`: evaluations by verdict and reason, their duration, logit checks by verdict,
  jobs in progress. The validator serves no HTTP, so `serve_validator_metrics(port)` starts
  prometheus_client's small HTTP server on VALIDATOR_METRICS_PORT (0, the default, serves nothing;
  the counters still count).
* `InferenceMetrics`: requests by route and status, generation latency, tokens generated; the
  inference server exposes them at `GET /metrics`.

Each object owns its registry, so several servers or validators in one process (tests) never
collide; `validator_metrics()` is the process-wide one the validator's code records into.
"""

from __future__ import annotations

import logging
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "InferenceMetrics",
    "ValidatorMetrics",
    "serve_validator_metrics",
    "validator_metrics",
]

log = logging.getLogger(__name__)

# Evaluations take seconds (CPU, quick) to the 30-minute sandbox limit.
_EVALUATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_GENERATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ValidatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.evaluations = Counter(
            "quasar_validator_evaluations_total",
            "Jobs evaluated, by the verdict posted and its reason",
            ["verdict", "reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "quasar_validator_evaluation_duration_seconds",
            "Wall-clock time of one job (fetch, sandboxed evaluation, logit check), by verdict",
            ["verdict"],
            registry=self.registry,
            buckets=_EVALUATION_BUCKETS,
        )
        self.logit_checks = Counter(
            "quasar_validator_logit_checks_total",
            "Logit verifications of miners' inference servers, by verdict",
            ["verdict"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "quasar_validator_jobs_in_progress", "Jobs being evaluated now", registry=self.registry
        )

    def observe_job(self, verdict: str, reason: str, seconds: float) -> None:
        self.evaluations.labels(verdict, reason).inc()
        self.duration.labels(verdict).observe(seconds)

    def observe_logit_check(self, verdict: str) -> None:
        self.logit_checks.labels(verdict).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


@cache
def validator_metrics() -> ValidatorMetrics:
    """The validator process's metrics (one per process)."""
    return ValidatorMetrics()


def serve_validator_metrics(port: int, host: str = "0.0.0.0") -> bool:
    """Serve the validator's metrics at http://host:port/metrics; False when port is 0 (off)."""
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=host, registry=validator_metrics().registry)
    except OSError as exc:
        raise OSError(
            f"cannot serve validator metrics on {host}:{port} ({exc}); free the port or set "
            "VALIDATOR_METRICS_PORT to another one (0 turns the metrics server off)"
        ) from exc
    log.info("validator metrics on http://%s:%d/metrics", host, port)
    return True


class InferenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "quasar_inference_requests_total",
            "HTTP requests served, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.generation = Histogram(
            "quasar_inference_generation_duration_seconds",
            "Time to generate one answer (prefill and decode), excluding the wait for the device",
            registry=self.registry,
            buckets=_GENERATION_BUCKETS,
        )
        self.tokens = Counter(
            "quasar_inference_generated_tokens_total", "Tokens generated", registry=self.registry
        )
        self.queue = Gauge(
            "quasar_inference_queued_requests", "Requests waiting for the device", registry=self.registry
        )

    def observe_request(self, method: str, route: str, status: int) -> None:
        self.requests.labels(method, route, str(status)).inc()

    def observe_generation(self, seconds: float, tokens: int) -> None:
        self.generation.observe(seconds)
        self.tokens.inc(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
