"""The streaming ingest: a long-running consumer of ``prediction-requests`` (group skiff-ingest).

Each poll is one batch: decode, write the events (serving.ingest.writer), send the
bad messages to the dead-letter topic, and only then commit the batch's offsets.
When Cassandra (or the dead-letter send) fails nothing is committed: the consumer
seeks back to the batch's first offsets, backs off (1 s doubling to 30 s) and reads
the batch again; errors are logged once, then every LOG_EVERY seconds, then once
on recovery. SIGTERM/SIGINT stop it between steps: a batch Cassandra acknowledged
is committed, one still failing is abandoned uncommitted, the group is left and
the ready file removed.

Ready file: written on each partition assignment (JSON: pid, group, partitions),
so the native service's probe knows the consumer has joined its group.

Metrics (serving.ingest.metrics): the lag per assigned partition, refreshed after
every poll, and counters of records, dead letters and failed batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.ingest import metrics
from serving.ingest.batch import BatchResult, KafkaDeadLetters, first_offsets, from_polled, process_batch
from serving.ingest.config import GROUP, Endpoints
from serving.kafka_lag import total_lag
from skiff.bracelet.events import TOPIC

log = logging.getLogger("serving.ingest")

BATCH_SIZE = 2000
# Batches in flight at most: one being written, one polled and waiting for the writer.
PIPELINE = 2
POLL_MS = 1000
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
# While a failure lasts, log it at most this often.
LOG_EVERY = 60.0
# With nothing to do, say so this often (per-batch lines stop when idle).
IDLE_LOG_EVERY = 300.0


class ReadyFile:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, group: str, partitions: list[Any]) -> None:
        if self.path is None:
            return
        doc = {"pid": os.getpid(), "group": group, "at": datetime.now(UTC).isoformat(),
               "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)}
        # Written whole then renamed; the temporary name is this process's own.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc) + "\n")
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("could not write the ready file %s: %s", self.path, exc)

    def remove(self) -> None:
        """Remove the file if this process wrote it (not another consumer's)."""
        if self.path is None:
            return
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
        except (OSError, ValueError, AttributeError):
            pass


class Failures:
    """Bounded logging of a repeated failure: the first, then every LOG_EVERY s, then recovery."""

    def __init__(self) -> None:
        self.count = 0
        self.since = 0.0
        self.logged = 0.0

    def failed(self, what: str, exc: BaseException) -> float:
        """Record one failure; returns the back-off to wait before the retry."""
        now = time.monotonic()
        if self.count == 0:
            self.since = now
        self.count += 1
        if self.count == 1 or now - self.logged >= LOG_EVERY:
            self.logged = now
            log.warning("%s failed (attempt %d, failing for %.0fs), not committed, retrying: %s: %s",
                        what, self.count, now - self.since, type(exc).__name__, exc)
        return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.count - 1))

    def recovered(self) -> None:
        if self.count:
            log.info("recovered after %d failed attempts (%.0fs)", self.count,
                     time.monotonic() - self.since)
        self.count = 0


def describe(result: BatchResult, seconds: float, behind: int | None) -> str:
    now = datetime.now(UTC)
    age = (f"event age {(now - result.newest_event).total_seconds():.1f}"
           f"-{(now - result.oldest_event).total_seconds():.1f}s"
           if result.oldest_event and result.newest_event else "no events")
    return (f"batch of {result.records}: {result.predictions} predictions, {result.labels} labels "
            f"({result.labels_applied} applied, {result.labels_pending} waiting for their prediction), "
            f"{result.dead} dead-lettered; {seconds:.2f}s; lag {behind if behind is not None else '?'} "
            f"messages; {age}")


class IngestConsumer:
    def __init__(self, endpoints: Endpoints, *, group: str = GROUP, batch_size: int = BATCH_SIZE,
                 ready_file: Path | None = None, stop: threading.Event | None = None,
                 topic: str = TOPIC) -> None:
        self.endpoints = endpoints
        self.group = group
        self.topic = topic  # another topic only for the benchmark
        self.batch_size = batch_size
        self.ready = ReadyFile(ready_file)
        self.stop = stop or threading.Event()
        # Offsets processed but not committed yet (a failed commit): retried with the next one.
        self.uncommitted: dict[Any, Any] = {}

    def _listener(self) -> Any:
        from kafka import ConsumerRebalanceListener

        outer = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                for tp in revoked:
                    outer.uncommitted.pop(tp, None)
                if revoked:
                    log.info("partitions revoked: %s", sorted(str(tp.partition) for tp in revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("joined group %s, assigned partitions %s", outer.group,
                         sorted(tp.partition for tp in assigned))
                outer.ready.write(outer.group, list(assigned))

        return Listener()

    def _connect_cassandra(self) -> tuple[Any, Any] | None:
        """(cluster, writer), retrying until Cassandra answers; None if stopped first."""
        from serving.ingest.writer import CassandraWriter, connect

        failures = Failures()
        while not self.stop.is_set():
            cluster = connect(self.endpoints.cassandra_host, self.endpoints.cassandra_port,
                              self.endpoints.cassandra_login)
            try:
                writer = CassandraWriter(cluster.connect())
            except Exception as exc:
                cluster.shutdown()
                self.stop.wait(failures.failed("connecting to Cassandra", exc))
                continue
            failures.recovered()
            return cluster, writer
        return None

    def _commit(self, consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        assigned = consumer.assignment()
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self.uncommitted[tp] = OffsetAndMetadata(offset, "", -1)
        if not self.uncommitted:
            return
        try:
            consumer.commit(dict(self.uncommitted))
        except KafkaError as exc:
            # Written but not committed: replayed after a restart or rebalance, harmlessly.
            log.warning("commit failed, kept for the next batch: %s: %s", type(exc).__name__, exc)
            return
        self.uncommitted.clear()

    def _rewind(self, consumer: Any, records: list[Any]) -> None:
        from kafka import TopicPartition

        assigned = consumer.assignment()
        for (topic, partition), offset in first_offsets(records).items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:  # a revoked partition is replayed by its new owner
                consumer.seek(tp, offset)

    def run(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        connected = self._connect_cassandra()
        if connected is None:
            return
        cluster, writer = connected
        consumer = KafkaConsumer(
            bootstrap_servers=self.endpoints.kafka, group_id=self.group, client_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self.batch_size)
        producer = KafkaProducer(bootstrap_servers=self.endpoints.kafka, client_id=f"{self.group}-dlq",
                                 acks="all", linger_ms=5)
        dead_letters = KafkaDeadLetters(producer, self.group)
        consumer.subscribe([self.topic], listener=self._listener())
        log.info("consuming %s as group %s from %s into Cassandra %s:%d", self.topic, self.group,
                 self.endpoints.kafka, self.endpoints.cassandra_host, self.endpoints.cassandra_port)
        failures = Failures()
        idle_since = last_idle_log = time.monotonic()
        # One thread writes, in poll order, while this one fetches the next batch: Kafka's
        # fetch and Cassandra's write overlap instead of taking turns. Offsets are still
        # committed here (kafka-python's consumer is not thread-safe), in order, and
        # only for batches Cassandra acknowledged.
        writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
        in_flight: deque[tuple[list[Any], float, Future[BatchResult]]] = deque()
        lag_gauges = metrics.LagGauges()

        def settle(block: bool) -> None:
            """Commit the finished batches at the head; on a failure rewind past all in flight."""
            while in_flight and (block or in_flight[0][2].done()):
                records, t0, future = in_flight.popleft()
                try:
                    result = future.result()
                except Exception as exc:  # Cassandra or the DLQ: nothing committed, read it again
                    # The batches after it are replayed too, whatever their own outcome:
                    # wait for them to finish, then read them all again.
                    for _, _, later_write in in_flight:
                        with contextlib.suppress(Exception):
                            later_write.result()
                    later = [r for batch, _, _ in in_flight for r in batch]
                    in_flight.clear()
                    self._rewind(consumer, records + later)
                    metrics.FAILED_BATCHES.inc()
                    self.stop.wait(failures.failed(f"batch of {len(records)}", exc))
                    return
                failures.recovered()
                # A batch Cassandra acknowledged is committed even when a stop was asked meanwhile.
                self._commit(consumer, result.offsets)
                metrics.RECORDS.inc(result.records)
                metrics.DEAD.inc(result.dead)
                log.info("%s", describe(result, time.monotonic() - t0, total_lag(consumer)))

        try:
            while not self.stop.is_set():
                settle(block=len(in_flight) >= PIPELINE)
                if len(in_flight) >= PIPELINE:
                    continue
                records = from_polled(consumer.poll(timeout_ms=POLL_MS if not in_flight else 50,
                                                    max_records=self.batch_size))
                # From the fetch just made: positions and high watermarks, no request to Kafka.
                lag_gauges.update(consumer)
                if not records:
                    now = time.monotonic()
                    if not in_flight and now - max(idle_since, last_idle_log) >= IDLE_LOG_EVERY:
                        last_idle_log = now
                        log.info("idle for %.0fs, lag %s messages", now - idle_since, total_lag(consumer))
                    continue
                in_flight.append((records, time.monotonic(),
                                  writes.submit(process_batch, records, writer, dead_letters)))
                idle_since = time.monotonic()
            settle(block=True)
        finally:
            log.info("stopping: leaving group %s", self.group)
            writes.shutdown(wait=True)
            self.ready.remove()
            for close in (lambda: consumer.close(autocommit=False), producer.close, cluster.shutdown):
                try:
                    close()
                except Exception as exc:
                    log.warning("while closing: %s: %s", type(exc).__name__, exc)
