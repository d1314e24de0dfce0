"""Kafka -> PostgreSQL: every event of the topic stored, offsets committed after.

A thread of the service (app.py starts it). Each poll's records are stored in one
transaction (store.store), then the offsets are committed: an event emitted while
the service was down is read when it returns (the group's committed offset), and one
read but not stored (the database was down) is read again after a seek back. A
record that is not an event is logged and skipped; it would never become one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from serving.kafka_lag import partition_lags
from serving.notifications import store
from serving.notifications.config import Config

log = logging.getLogger(__name__)

STORED = Counter("skiff_notifications_events_stored_total", "Events stored", ["kind"])
SKIPPED = Counter("skiff_notifications_records_skipped_total", "Records that are not events")
STORE_FAILURES = Counter("skiff_notifications_store_failures_total",
                         "Batches not stored (database errors), read again")
LAG = Gauge("skiff_notifications_consumer_lag", "Records not yet stored", ["partition"])
MAX_BACKOFF = 30.0


class Consumer:
    def __init__(self, config: Config, db: Engine) -> None:
        self.config = config
        self.db = db
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.backoff = 0.0

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            self.config.topic, bootstrap_servers=self.config.kafka, group_id=self.config.group,
            client_id="skiff-notifications",
            # Committed by hand after the rows are stored; a new group starts at the
            # beginning, so events sent before the service ever ran are not lost.
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="events-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def handle(self, records: list[Any]) -> list[int]:
        """Store one batch; raises SQLAlchemyError when the database refuses it."""
        events = []
        for record in records:
            try:
                events.append(store.parse(record.value))
            except store.BadEvent as exc:
                SKIPPED.inc()
                log.warning("skipped %s-%d@%d: %s", record.topic, record.partition,
                            record.offset, exc)
        seqs = store.store(self.db, events)
        for event in events:
            STORED.labels(event["kind"]).inc()
        return seqs

    def poll_once(self, consumer: Any) -> None:
        batches = consumer.poll(timeout_ms=1000)
        self.ready.set()
        records = [r for rs in batches.values() for r in rs]
        if records:
            try:
                self.handle(records)
            except SQLAlchemyError as exc:
                STORE_FAILURES.inc()
                # Not stored: not committed, and read again from the batch's start.
                for tp, rs in batches.items():
                    consumer.seek(tp, rs[0].offset)
                self.backoff = min(MAX_BACKOFF, max(1.0, self.backoff * 2))
                log.warning("storing %d events failed (%s); retrying in %.0fs", len(records),
                            exc, self.backoff)
                self.stopping.wait(self.backoff)
                return
            consumer.commit()
            self.backoff = 0.0
        for (_, partition), behind in partition_lags(consumer).items():
            LAG.labels(str(partition)).set(behind)

    def run(self) -> None:
        from kafka.errors import KafkaError

        while not self.stopping.is_set():
            try:
                consumer = self._consumer()
            except KafkaError as exc:
                log.warning("Kafka at %s unreachable (%s); retrying", self.config.kafka, exc)
                self.stopping.wait(5.0)
                continue
            log.info("consuming %s as group %s", self.config.topic, self.config.group)
            try:
                while not self.stopping.is_set():
                    self.poll_once(consumer)
            except KafkaError as exc:
                log.warning("Kafka consumer failed (%s); reconnecting", exc)
                self.stopping.wait(2.0)
            finally:
                consumer.close()
