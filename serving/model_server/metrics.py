"""Prometheus metrics, correct with several gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the service sets it) every worker writes
its samples to files there and ``/metrics`` sums them over all workers, whichever
worker answers the scrape; gunicorn_conf.py empties the folder at start and
drops dead workers' gauges. Without it (a single process) the default registry
is used.

The spool depth is read from the spool at scrape time rather than kept in a
gauge: the spool is shared by all workers, so any of them knows the real number.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "skiff_model_server"

REQUESTS = Counter(f"{PREFIX}_requests_total", "HTTP requests by endpoint and status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram(f"{PREFIX}_request_duration_seconds", "Time to answer a request, by endpoint",
                    ["endpoint"],
                    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
PREDICTIONS = Counter(f"{PREFIX}_predictions_total", "Records predicted, by model version",
                      ["model_version"])
PUBLISHED = Counter(f"{PREFIX}_events_published_total",
                    "Capture events the broker acknowledged (and left the spool)")
PUBLISH_FAILURES = Counter(f"{PREFIX}_publish_failures_total",
                           "Failed attempts to publish the spool to Kafka (the events stay spooled)")
CAPTURE_FAILURES = Counter(f"{PREFIX}_capture_failures_total",
                           "Requests refused because their events could not be spooled")
MODEL_SWAPS = Counter(f"{PREFIX}_model_swaps_total", "Model versions loaded and swapped in")
MODEL_LOAD_FAILURES = Counter(f"{PREFIX}_model_refresh_failures_total",
                              "Failed alias checks or model loads (the served model stays)")


class SpoolDepth:
    """A collector: capture events waiting in the spool, counted when scraped."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_spool_depth",
                                "Capture events spooled locally, not yet acknowledged by Kafka",
                                value=self._depth())


def render(spool_depth: Callable[[], int]) -> tuple[bytes, str]:
    """The /metrics body and its content type."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    registry.register(SpoolDepth(spool_depth))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Default:
    """The process's default registry, as one collector of a scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
