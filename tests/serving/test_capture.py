"""The capture outbox: the SQLite spool and the publisher, with a fake Kafka producer."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from serving.model_server.capture import Publisher, Spool, prediction_messages
from skiff.bracelet.events import TOPIC, Label, decode, now

pytestmark = pytest.mark.unit


def messages(*names: str) -> list[tuple[str, bytes, bytes]]:
    return [("t", n.encode(), f"value-{n}".encode()) for n in names]


def test_appended_messages_come_back_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a", "b"))
    spool.append(messages("c"))
    assert [m.key for m in spool.head()] == [b"a", b"b", b"c"]
    assert [m.key for m in spool.head(limit=2)] == [b"a", b"b"]
    assert spool.depth() == 3


def test_delete_through_forgets_only_the_delivered_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a", "b", "c"))
    second = spool.head()[1]
    spool.delete_through(second.id)
    assert [m.key for m in spool.head()] == [b"c"]
    spool.append(messages("d"))
    assert [m.key for m in spool.head()] == [b"c", b"d"]


def test_ids_keep_growing_after_the_spool_was_emptied(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a"))
    first = spool.head()[0].id
    spool.delete_through(first)
    spool.append(messages("b"))
    assert spool.head()[0].id > first


def test_the_spool_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a", "b"))
    spool.close()
    again = Spool(tmp_path)
    assert [(m.topic, m.key, m.value) for m in again.head()] == messages("a", "b")


def test_the_spool_is_in_wal_mode(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    mode = spool._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _append_many(directory: str, tag: str, count: int) -> None:
    spool = Spool(Path(directory))
    for i in range(count):
        spool.append(messages(f"{tag}{i}"))
    spool.close()


def test_several_processes_append_to_one_spool_without_losing_any(tmp_path: Path) -> None:
    # What two gunicorn workers do: separate connections, one file.
    workers = [multiprocessing.get_context("fork").Process(target=_append_many, args=(str(tmp_path), t, 200))
               for t in "xy"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    keys = [m.key.decode() for m in Spool(tmp_path).head(limit=1000)]
    assert len(keys) == 400
    for tag in "xy":
        assert [k for k in keys if k[0] == tag] == [f"{tag}{i}" for i in range(200)]


def test_events_are_spooled_for_the_capture_topic_keyed_by_request_id() -> None:
    label = Label(uuid.uuid4(), now(), 1)
    [(topic, key, value)] = prediction_messages([label])
    assert (topic, key) == (TOPIC, str(label.request_id).encode())
    assert decode(value) == label


class Done:
    def get(self, timeout: float | None = None) -> Any:
        return None


class Failed:
    def get(self, timeout: float | None = None) -> Any:
        raise TimeoutError("no acknowledgement")


class FakeProducer:
    """Acknowledges everything except the keys in ``fail``."""

    def __init__(self, fail: set[bytes] | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = fail or set()
        self.closed = False

    def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.sent.append((topic, key, value))
        return Failed() if key in self.fail else Done()

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_publish_sends_in_order_and_deletes_what_was_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a", "b", "c"))
    producer = FakeProducer()
    published: list[int] = []
    publisher = Publisher(spool, lambda: producer, on_published=published.append)
    assert publisher.publish_once() == 3
    assert producer.sent == messages("a", "b", "c")
    assert spool.depth() == 0 and published == [3]
    assert publisher.publish_once() == 0


def test_a_failed_message_and_those_after_it_stay_spooled(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a", "b", "c"))
    publisher = Publisher(spool, lambda: FakeProducer(fail={b"b"}))
    with pytest.raises(TimeoutError):
        publisher.publish_once()
    assert [m.key for m in spool.head()] == [b"b", b"c"]


def test_a_producer_that_cannot_be_created_keeps_everything(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a"))

    def no_broker() -> FakeProducer:
        raise ConnectionError("NoBrokersAvailable")

    with pytest.raises(ConnectionError):
        Publisher(spool, no_broker).publish_once()
    assert spool.depth() == 1


def test_only_one_publisher_holds_the_lock(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = Publisher(spool, FakeProducer), Publisher(spool, FakeProducer)
    assert first.holds_lock()
    assert not second.holds_lock()
    first.stop()
    assert second.holds_lock()
    second.stop()


def test_the_thread_retries_until_the_broker_is_back_then_drains_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(messages("a", "b"))
    broker_up = threading.Event()
    producer = FakeProducer()
    failures: list[Exception] = []

    def factory() -> FakeProducer:
        if not broker_up.is_set():
            raise ConnectionError("NoBrokersAvailable")
        return producer

    publisher = Publisher(spool, factory, poll_seconds=0.05, on_failure=failures.append)
    publisher.start()
    try:
        time.sleep(0.3)
        spool.append(messages("c"))
        assert spool.depth() == 3 and failures
        broker_up.set()
        deadline = time.monotonic() + 10
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        spool.append(messages("d"))
        publisher.wake()
        while len(producer.sent) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.stop()
    assert [key for _, key, _ in producer.sent] == [b"a", b"b", b"c", b"d"]
    assert spool.depth() == 0 and producer.closed
