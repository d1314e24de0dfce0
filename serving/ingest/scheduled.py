"""The scheduled ingest: one pass from the group's committed offsets to the topic's end.

dags/capture_ingest.py runs :func:`ingest_to_end` every few minutes, as the second
way to run the capture path (where no long-running consumer is wanted). It reads
``prediction-requests`` as group ``skiff-ingest-batch`` (its own offsets, never the
streaming consumer's), stops at the end offsets taken when it started, writes with
the same CassandraWriter and commits after each batch Cassandra acknowledged. A
failure raises (the task fails and Airflow retries it); what was committed stays.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from serving.ingest.batch import KafkaDeadLetters, before, from_polled, process_batch
from serving.ingest.config import BATCH_GROUP, Endpoints, endpoints
from skiff.bracelet.events import TOPIC

log = logging.getLogger("serving.ingest.scheduled")

BATCH_SIZE = 1000


def ingest_to_end(where: Endpoints | None = None, *, group: str = BATCH_GROUP,
                  batch_size: int = BATCH_SIZE, timeout_s: float = 480.0) -> dict[str, Any]:
    """Ingest what the group has not yet, up to the current end; returns the counts.

    Raises TimeoutError when the end is not reached within ``timeout_s`` (what was
    done by then is committed; the next run goes on from there).
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from serving.ingest.writer import CassandraWriter, connect

    where = where or endpoints()
    t0 = time.monotonic()
    counts = {"records": 0, "predictions": 0, "labels": 0, "dead_lettered": 0,
              "labels_applied": 0, "labels_pending": 0, "batches": 0}
    cluster = connect(where.cassandra_host, where.cassandra_port, where.cassandra_login)
    consumer = KafkaConsumer(bootstrap_servers=where.kafka, group_id=group, client_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    producer = KafkaProducer(bootstrap_servers=where.kafka, client_id=f"{group}-dlq", acks="all",
                             linger_ms=5)
    try:
        writer = CassandraWriter(cluster.connect())
        dead_letters = KafkaDeadLetters(producer, group)
        ids = consumer.partitions_for_topic(TOPIC)
        if not ids:
            raise RuntimeError(f"topic {TOPIC} not found on {where.kafka}")
        partitions = [TopicPartition(TOPIC, p) for p in sorted(ids)]
        # Assigned, not subscribed: no group rebalance; the offsets are still the group's.
        consumer.assign(partitions)
        end = {(tp.topic, tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
        # The group's committed offsets, else the beginning (also where retention removed them).
        # Sought explicitly: kafka-python 2.3 can hang in position() while it looks them up itself.
        beginning = consumer.beginning_offsets(partitions)
        start = {}
        for tp in partitions:
            offset = max(consumer.committed(tp) or 0, beginning[tp])
            consumer.seek(tp, offset)
            start[(tp.topic, tp.partition)] = offset
        todo = [tp for tp in partitions if start[(tp.topic, tp.partition)] < end[(tp.topic, tp.partition)]]
        consumer.pause(*[tp for tp in partitions if tp not in todo])
        log.info("from %s to %s", _fmt(start), _fmt(end))
        while todo:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"end not reached in {timeout_s:.0f}s; done so far: {counts}")
            polled = from_polled(consumer.poll(timeout_ms=1000, max_records=batch_size))
            records = before(polled, end)
            if records:
                result = process_batch(records, writer, dead_letters)
                consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                 for (t, p), o in result.offsets.items()})
                counts["batches"] += 1
                counts["records"] += result.records
                counts["predictions"] += result.predictions
                counts["labels"] += result.labels
                counts["dead_lettered"] += result.dead
                counts["labels_applied"] += result.labels_applied
                counts["labels_pending"] += result.labels_pending
            done = [tp for tp in todo if consumer.position(tp) >= end[(tp.topic, tp.partition)]]
            if done:
                consumer.pause(*done)
                todo = [tp for tp in todo if tp not in done]
    finally:
        consumer.close(autocommit=False)
        producer.close()
        cluster.shutdown()
    counts_out: dict[str, Any] = dict(counts)
    counts_out.update({"group": group, "start_offsets": _fmt(start), "end_offsets": _fmt(end),
                       "seconds": round(time.monotonic() - t0, 2)})
    log.info("ingested %s", counts_out)
    return counts_out


def _fmt(offsets: dict[tuple[str, int], int]) -> dict[str, int]:
    return {f"{t}-{p}": o for (t, p), o in sorted(offsets.items())}
