"""The capture outbox: events are spooled to local disk first, published to Kafka after.

A request appends its events to :class:`Spool` (SQLite, WAL) and answers; it
never waits for the broker. A :class:`Publisher` thread sends the spooled events
to Kafka in spool order and deletes them once the broker acknowledged them
(``acks=all``). While Kafka is unreachable events wait in the spool; a restart
loses nothing. Delivery is at least once: an event whose acknowledgement was lost
is sent again, so consumers deduplicate by request id (see
docs/decisions/0005-capture-outbox.md).

Several gunicorn workers share one spool file. Each runs a publisher thread, but
only the one holding an exclusive ``flock`` on ``publisher.lock`` publishes, so
the spool drains in one order; when that worker dies the kernel releases the
lock and another takes over.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skiff.bracelet.events import TOPIC, Label, Prediction, encode

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    -- AUTOINCREMENT: ids only ever grow, even after the newest rows were deleted,
    -- so the publisher's "delete through id N" never touches a later event.
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    key     BLOB NOT NULL,
    value   BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class Spooled:
    id: int
    topic: str
    key: bytes
    value: bytes


class Spool:
    """An ordered, durable queue of Kafka messages in one SQLite file.

    Safe for the threads of one process (one connection behind a lock) and for
    several processes (SQLite's own locking; WAL lets readers run beside the writer).
    """

    def __init__(self, directory: Path, name: str = "outbox.sqlite3") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN ourselves. timeout: how long to wait
        # for another worker's write transaction (they last microseconds).
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process dying (the restart
            # case); a power cut may lose the last moments, as it would on our
            # single Kafka broker, which does not fsync each message either. FULL
            # (an fsync per request) halved the throughput (ADR 0005).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)

    def append(self, messages: Iterable[tuple[str, bytes, bytes]]) -> None:
        """Add (topic, key, value) messages, all or none, after every earlier append."""
        rows = list(messages)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO outbox (topic, key, value) VALUES (?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def head(self, limit: int = 500) -> list[Spooled]:
        """The oldest ``limit`` messages, oldest first."""
        with self._lock:
            cur = self._db.execute(
                "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT ?", (limit,))
            return [Spooled(i, t, bytes(k), bytes(v)) for i, t, k, v in cur.fetchall()]

    def delete_through(self, last_id: int) -> None:
        """Forget every message up to and including ``last_id`` (they were delivered)."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Future(Protocol):
    def get(self, timeout: float | None = None) -> Any: ...


class Producer(Protocol):
    """What the publisher needs of kafka-python's KafkaProducer (a fake in unit tests)."""

    def send(self, topic: str, value: bytes, key: bytes) -> Future: ...
    def close(self, timeout: float | None = None) -> None: ...


class DeliveryFailed(Exception):
    """The broker did not acknowledge a message (librdkafka's delivery report said why)."""


class _Delivery:
    """A Future for one produced message, settled by librdkafka's delivery report."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._settled = False
        self._error: Any = None

    def __call__(self, error: Any, _message: Any) -> None:
        self._error = error
        self._settled = True

    def get(self, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self._settled:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeliveryFailed(f"no acknowledgement within {timeout}s")
            # Serves the delivery reports of everything sent so far: the first
            # get() of a batch waits for the batch, the others find theirs settled.
            self._producer.flush(min(left, 1.0))
        if self._error is not None:
            raise DeliveryFailed(str(self._error))
        return None


class ConfluentProducer:
    """The publisher's Producer on confluent-kafka (librdkafka, C).

    kafka-python built each record in Python: the profile of a 1,000-row request
    showed its send() and sender thread taking about 60% of the worker's GIL time
    (ADR 0013). librdkafka batches, compresses and checksums off the GIL.
    """

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer as RdProducer  # imported late: unit tests use a fake

        self._producer = RdProducer({
            "bootstrap.servers": bootstrap,
            "client.id": "skiff-model-server",
            "acks": "all",
            # Idempotence keeps per-partition order across retries (up to 5 requests in
            # flight) and lets the broker drop a retry's duplicates.
            "enable.idempotence": True,
            # Java's and kafka-python's partitioner, so a request id lands on the same
            # partition as before (labels after their predictions; the ingest's order).
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            # Fail a batch within 30 s: it is still in the spool and is sent again by a
            # fresh producer.
            "message.timeout.ms": 30000,
            "request.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 2000,
            # While the broker is away librdkafka reports each reconnect; the
            # publisher says it once per distinct problem instead.
            "log_level": 2,
            "error_cb": lambda err: log.debug("kafka: %s", err),
        })

    def send(self, topic: str, value: bytes, key: bytes) -> Future:
        delivery = _Delivery(self._producer)
        self._producer.produce(topic, value=value, key=key, on_delivery=delivery)
        return delivery

    def close(self, timeout: float | None = None) -> None:
        if not timeout:
            # Dropped after a failure: what it still holds is in the spool and is sent
            # again in order by the next producer, so this one must not send it late.
            self._producer.purge()
        self._producer.flush(timeout or 0)


def kafka_producer(bootstrap: str) -> Producer:
    """A producer that keeps per-partition order and never blocks a request (it runs in
    the publisher thread; requests only append to the spool)."""
    return ConfluentProducer(bootstrap)


class Publisher:
    """Sends the spool to Kafka in order from a daemon thread; one process at a time."""

    def __init__(self, spool: Spool, producer_factory: Callable[[], Producer], *,
                 batch: int = 500, poll_seconds: float = 0.2, linger: float = 0.02,
                 ack_timeout: float = 40.0,
                 on_published: Callable[[int], None] = lambda n: None,
                 on_failure: Callable[[Exception], None] = lambda exc: None) -> None:
        self.spool = spool
        self._factory = producer_factory
        self._producer: Producer | None = None
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.linger = linger
        self.ack_timeout = ack_timeout
        self._on_published = on_published
        self._on_failure = on_failure
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    def wake(self) -> None:
        """New events in this process: publish now rather than at the next poll."""
        self._wake.set()

    def holds_lock(self) -> bool:
        """Take the publisher lock if it is free; True while this process holds it."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.spool.path.with_name("publisher.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def publish_once(self) -> int:
        """Send the oldest batch; delete what the broker acknowledged. Returns that count.

        Raises on the first message that failed: the messages before it are deleted,
        it and those after stay in the spool and are sent again, in order.
        """
        rows = self.spool.head(self.batch)
        if not rows:
            return 0
        if self._producer is None:
            self._producer = self._factory()
        failure: Exception | None = None
        sent: list[tuple[Spooled, Future]] = []
        for row in rows:
            try:
                sent.append((row, self._producer.send(row.topic, value=row.value, key=row.key)))
            except Exception as exc:  # no metadata within max_block_ms: broker gone
                failure = exc
                break
        delivered: list[Spooled] = []
        for row, fut in sent:
            try:
                fut.get(timeout=self.ack_timeout)
            except Exception as exc:
                failure = exc
                break
            delivered.append(row)
        if delivered:
            self.spool.delete_through(delivered[-1].id)
            self._on_published(len(delivered))
        if failure is not None:
            raise failure
        return len(delivered)

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                # No grace period: whatever it still holds is in the spool anyway.
                self._producer.close(timeout=0)
            except Exception:
                log.debug("closing the Kafka producer failed", exc_info=True)
            self._producer = None

    def run(self) -> None:
        backoff = 0.5
        last_error: str | None = None
        while not self._stop.is_set():
            if not self.holds_lock():
                self._stop.wait(1.0)
                continue
            try:
                sent = self.publish_once()
            except Exception as exc:
                self._on_failure(exc)
                message = f"{type(exc).__name__}: {exc}"
                # Once per distinct problem: a broker down for an hour is one line, not 700.
                if message != last_error:
                    log.warning("publishing the capture spool failed, retrying every %.0fs at "
                                "most: %s", 5.0, message)
                last_error = message
                self._drop_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if last_error is not None:
                log.warning("publishing the capture spool works again")
                last_error = None
            backoff = 0.5
            if sent < self.batch:
                # Caught up: sleep until this process appends or the poll interval
                # passes (another worker may have appended).
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                # Let the burst that woke us grow: one spool read, one Kafka round trip
                # and one delete per few dozen events rather than per request.
                self._stop.wait(self.linger)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="capture-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then close the producer and release the lock."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout)
            except Exception:
                log.debug("closing the Kafka producer failed", exc_info=True)
            self._producer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def prediction_messages(events: Iterable[Prediction | Label]) -> list[tuple[str, bytes, bytes]]:
    """Spool rows for capture events: the capture topic, keyed by request id."""
    return [(TOPIC, *encode(e)) for e in events]
