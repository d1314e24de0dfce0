"""The streaming ingest's Prometheus metrics, served at ``/metrics`` on ``--metrics-address``.

Prometheus (skiff.services.prometheus) scrapes them. The lag per partition is the
number of messages between the consumer's position and the partition's high
watermark, as of the consumer's last fetch (no extra request to Kafka); a
partition the consumer no longer holds loses its series rather than keeping its
last value, so a rebalance does not leave a stale lag behind.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from serving.kafka_lag import partition_lags

log = logging.getLogger("serving.ingest")

# One registry of our own: only the ingest's series, whichever process imports this.
REGISTRY = CollectorRegistry()
LAG = Gauge("skiff_ingest_lag_messages", "Messages behind the high watermark, per assigned partition",
            ["topic", "partition"], registry=REGISTRY)
ASSIGNED = Gauge("skiff_ingest_assigned_partitions", "Partitions this consumer holds", registry=REGISTRY)
RECORDS = Counter("skiff_ingest_records", "Kafka records written to Cassandra and committed",
                  registry=REGISTRY)
DEAD = Counter("skiff_ingest_dead_lettered", "Records sent to the dead-letter topic", registry=REGISTRY)
FAILED_BATCHES = Counter("skiff_ingest_failed_batches",
                         "Batches that failed (Cassandra or the dead-letter send) and will be read again",
                         registry=REGISTRY)


class LagGauges:
    """Keeps LAG equal to the consumer's current assignment: set the held, remove the others."""

    def __init__(self) -> None:
        self.shown: set[tuple[str, str]] = set()

    def update(self, consumer: Any) -> None:
        lags = partition_lags(consumer)
        ASSIGNED.set(len(consumer.assignment()))
        now = {(topic, str(partition)) for topic, partition in lags}
        for labels in self.shown - now:
            LAG.remove(*labels)
        for (topic, partition), value in lags.items():
            LAG.labels(topic, str(partition)).set(value)
        self.shown = now


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port), with an error naming what was wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8420")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(address: str) -> int:
    """Serve REGISTRY on ``address`` from a daemon thread (prometheus_client's own server).

    Returns the port listened on (port 0 picks a free one).
    """
    host, port = parse_address(address)
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return int(server.server_port)
