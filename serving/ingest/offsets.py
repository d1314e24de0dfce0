"""Kafka offsets a producer's acknowledgements reached, and whether a group committed past them.

Shared by the integration tests and benchmarks/capture_throughput.py: "everything I
sent is ingested" is "the group's committed offset is at or past the offset after
the last message I sent", partition by partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def acked_ends(futures: Iterable[Any], timeout: float = 60) -> dict[Any, int]:
    """Wait for kafka-python send futures; per TopicPartition, the offset after the last one."""
    from kafka import TopicPartition

    ends: dict[Any, int] = {}
    for future in futures:
        meta = future.get(timeout=timeout)
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


def committed_past(admin: Any, group: str, ends: dict[Any, int]) -> bool:
    """Whether ``group`` committed at least ``ends`` on every partition (a KafkaAdminClient)."""
    done = admin.list_consumer_group_offsets(group)
    return all(tp in done and done[tp].offset >= end for tp, end in ends.items())
