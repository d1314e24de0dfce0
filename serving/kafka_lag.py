"""How far a kafka-python consumer is behind, per assigned partition.

The lag is the number of messages between the consumer's position and the
partition's high watermark as of its last fetch: no extra request to Kafka, so it
can be read after every poll. Shared by the ingest and the notification service.
"""

from __future__ import annotations

from typing import Any


def partition_lags(consumer: Any) -> dict[tuple[str, int], int]:
    """Lag of each assigned partition whose high watermark is known (from the last fetch)."""
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:  # nothing fetched from it yet
            continue
        try:
            lags[(tp.topic, tp.partition)] = max(0, high - consumer.position(tp))
        except Exception:  # position of a partition being revoked
            continue
    return lags


def total_lag(consumer: Any) -> int | None:
    """Messages behind on all assigned partitions; None while no watermark is known."""
    lags = partition_lags(consumer)
    return sum(lags.values()) if lags else None
