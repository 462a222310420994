"""Prometheus metrics and structured JSON logs for the service.

Counters live in one registry per process; the dispatcher and the API middleware update them,
`GET /metrics` renders them with the queue depth read from the store at scrape time.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
JOBS_STARTED = Counter("layerwise_jobs_started", "Jobs launched on Ray", ["job_type"],
                       registry=REGISTRY)
JOBS_FINISHED = Counter("layerwise_jobs_finished", "Jobs that reached a final status",
                        ["job_type", "status"], registry=REGISTRY)
JOBS_RETRIED = Counter("layerwise_jobs_retried", "Jobs put back in the queue after a "
                       "worker or service failure", ["job_type"], registry=REGISTRY)
DISPATCH_LATENCY = Histogram("layerwise_dispatch_latency_seconds",
                             "From submission to launch on Ray", registry=REGISTRY,
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
API_LATENCY = Histogram("layerwise_api_request_seconds", "HTTP request latency",
                        ["method", "route", "status"], registry=REGISTRY,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
QUEUE_DEPTH = Gauge("layerwise_jobs", "Jobs in the store by status", ["status"],
                    registry=REGISTRY)


def render(counts_by_status: dict[str, int]) -> bytes:
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        QUEUE_DEPTH.labels(status=status).set(counts_by_status.get(status, 0))
    return generate_latest(REGISTRY)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={"job_id": ...}` fields are kept."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items()
                      if k not in self._STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON logs on stderr for the `layerwise` loggers."""
    logger = logging.getLogger("layerwise")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
