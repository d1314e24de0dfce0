"""The capture path on the real stack: events published to Kafka end up in Cassandra.

Needs the ``ingest`` service (group skiff-ingest) running in the stack. Every test
uses its own model name, so the rows it counts are its own; waits poll with a
deadline (Cassandra rows, or the group's committed offsets), never a fixed sleep.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from serving.ingest import consumer as streaming
from serving.ingest import writer as writer_module
from serving.ingest.config import GROUP, Endpoints
from serving.ingest.offsets import acked_ends, committed_past
from serving.ingest.scheduled import ingest_to_end
from serving.ingest.writer import connect, day_of
from skiff import cassandra_access
from skiff.bracelet.events import DEAD_LETTER_TOPIC, TOPIC, Label, Prediction, encode
from skiff.native.context import Context
from skiff.native.spec import NotReady
from skiff.services import ingest, kafka
from tests.polling import eventually

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def where(stack: Context) -> Endpoints:
    s = stack.settings
    try:
        # Cheap when healthy; gives the service a while when the stack has just started.
        eventually(lambda: _ready(stack), "the ingest service is ready", timeout=90)
    except AssertionError:
        pytest.fail("the ingest service is not running in the stack (skiff.services.REGISTRY "
                    "needs ingest.SERVICE); `skiff status` says why", pytrace=False)
    return Endpoints(kafka.bootstrap_servers(stack), s.host("cassandra"), s.cassandra_port,
                     cassandra_access.login(s, cassandra_access.INGEST))


def _ready(ctx: Context) -> bool:
    try:
        ingest.ready(ctx)
    except NotReady:
        return False
    return True


@pytest.fixture(scope="module")
def session(where: Endpoints) -> Iterator[Any]:
    cluster = connect(where.cassandra_host, where.cassandra_port, where.cassandra_login, timeout=30)
    yield cluster.connect()
    cluster.shutdown()


@pytest.fixture(scope="module")
def producer(where: Endpoints) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=where.kafka, acks="all")
    yield p
    p.close()


@pytest.fixture(scope="module")
def admin(where: Endpoints) -> Iterator[KafkaAdminClient]:
    a = KafkaAdminClient(bootstrap_servers=where.kafka)
    yield a
    a.close()


@pytest.fixture()
def model() -> str:
    return f"ingest-test-{uuid.uuid4().hex[:10]}"


def predictions(model: str, n: int) -> list[Prediction]:
    now = datetime.now(UTC)
    return [Prediction(uuid.uuid4(), now + timedelta(milliseconds=i), model, f"v{i % 3}",
                       {"age": 40.0 + i, "chol": None}, i % 2, round(0.5 + i / (2 * n), 4))
            for i in range(n)]


def publish(producer: KafkaProducer, events: list[Any]) -> dict[TopicPartition, int]:
    """Send and wait for the acks; returns per partition the offset after the last one sent."""
    return acked_ends([producer.send(TOPIC, key=k, value=v) for k, v in (encode(e) for e in events)],
                      timeout=30)


def rows(session: Any, model: str, events: list[Prediction]) -> dict[uuid.UUID, Any]:
    return {r.request_id: r for day in sorted({day_of(e.time) for e in events})
            for r in session.execute(
                "SELECT request_id, model_version, prediction, probability, label, received_at"
                " FROM skiff.prediction_events WHERE model_name = %s AND day = %s", (model, day))}


def test_published_predictions_become_exactly_one_row_each(session, producer, model) -> None:  # type: ignore[no-untyped-def]
    events = predictions(model, 40)
    publish(producer, events)
    got = eventually(lambda: r if len(r := rows(session, model, events)) >= len(events) else None,
                     f"{len(events)} rows for {model}")
    assert len(got) == len(events)
    for e in events:
        row = got[e.request_id]
        assert (row.model_version, row.prediction, row.probability) == (
            e.model_version, float(e.prediction), e.probability)
        assert row.label is None and row.received_at is not None


def test_publishing_the_same_events_again_writes_no_duplicate(session, producer, admin, model) -> None:  # type: ignore[no-untyped-def]
    events = predictions(model, 25)
    publish(producer, events)
    eventually(lambda: len(rows(session, model, events)) == len(events), "the first copy written")
    again = publish(producer, events)
    eventually(lambda: committed_past(admin, GROUP, again), "the replay consumed and committed")
    assert set(rows(session, model, events)) == {e.request_id for e in events}


def test_a_label_after_its_prediction_is_set_on_its_row(session, producer, model) -> None:  # type: ignore[no-untyped-def]
    events = predictions(model, 3)
    publish(producer, events)
    eventually(lambda: len(rows(session, model, events)) == 3, "the predictions written")
    target = events[1]
    publish(producer, [Label(target.request_id, datetime.now(UTC), 1)])
    eventually(lambda: rows(session, model, events)[target.request_id].label == 1, "the label set")
    others = rows(session, model, events)
    assert others[events[0].request_id].label is None and others[events[2].request_id].label is None


def test_a_label_published_before_its_prediction_is_applied_when_it_arrives(  # type: ignore[no-untyped-def]
        session, producer, admin, model) -> None:
    (early,) = predictions(model, 1)
    label_ends = publish(producer, [Label(early.request_id, datetime.now(UTC), 0)])
    # The label's batch is written and committed before the prediction exists.
    eventually(lambda: committed_past(admin, GROUP, label_ends), "the label consumed")
    waiting = session.execute("SELECT label, model_name FROM skiff.prediction_labels WHERE request_id = %s",
                              (early.request_id,)).one()
    assert (waiting.label, waiting.model_name) == (0, None)
    publish(producer, [early])
    row = eventually(lambda: rows(session, model, [early]).get(early.request_id), "the prediction written")
    eventually(lambda: rows(session, model, [early])[early.request_id].label == 0,
               "the waiting label applied")
    assert row.prediction == float(early.prediction)


def test_an_older_label_replayed_later_does_not_overwrite_a_newer_one(  # type: ignore[no-untyped-def]
        session, producer, admin, model) -> None:
    (p,) = predictions(model, 1)
    t = datetime.now(UTC)
    publish(producer, [p, Label(p.request_id, t, 1)])
    eventually(lambda: (r := rows(session, model, [p]).get(p.request_id)) and r.label == 1, "label 1")
    stale = publish(producer, [Label(p.request_id, t - timedelta(minutes=5), 0)])
    eventually(lambda: committed_past(admin, GROUP, stale), "the stale label consumed")
    assert rows(session, model, [p])[p.request_id].label == 1
    publish(producer, [Label(p.request_id, t + timedelta(seconds=1), 0)])
    eventually(lambda: rows(session, model, [p])[p.request_id].label == 0, "the newest label")


def test_garbage_goes_to_the_dead_letter_topic_and_writes_nothing(  # type: ignore[no-untyped-def]
        where, session, producer) -> None:
    request_id = uuid.uuid4()
    # A prediction without its features: valid JSON, not a valid capture event.
    bad = (b'{"type":"prediction","request_id":"%s","time":"%s","model_name":"x"}'
           % (str(request_id).encode(), datetime.now(UTC).isoformat().encode()))
    key = f"garbage-{uuid.uuid4()}".encode()
    dlq = KafkaConsumer(bootstrap_servers=where.kafka, enable_auto_commit=False)
    parts = [TopicPartition(DEAD_LETTER_TOPIC, p) for p in dlq.partitions_for_topic(DEAD_LETTER_TOPIC)]
    dlq.assign(parts)
    for tp, end in dlq.end_offsets(parts).items():
        dlq.seek(tp, end)
    meta = producer.send(TOPIC, key=key, value=bad).get(timeout=30)

    def find() -> Any:
        for batch in dlq.poll(timeout_ms=500).values():
            for m in batch:
                if m.key == key:
                    return m
        return None

    try:
        letter = eventually(find, "the message on the dead-letter topic")
    finally:
        dlq.close()
    headers = dict(letter.headers)
    assert letter.value == bad
    assert headers["reason"] == b"missing field 'features'"
    assert headers["source_partition"] == str(meta.partition).encode()
    assert headers["source_offset"] == str(meta.offset).encode()
    assert headers["consumer_group"] == GROUP.encode()
    assert session.execute("SELECT * FROM skiff.prediction_labels WHERE request_id = %s",
                           (request_id,)).one() is None


def start_group_at_the_end(where: Endpoints, group: str) -> None:
    """Commit the topic's end offsets for a new group, so it reads only what comes next."""
    c = KafkaConsumer(bootstrap_servers=where.kafka, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(TOPIC, p) for p in c.partitions_for_topic(TOPIC)]
        c.assign(parts)
        c.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in c.end_offsets(parts).items()})
    finally:
        c.close(autocommit=False)


def test_the_scheduled_mode_reads_from_its_own_committed_offsets(where, session, producer, model) -> None:  # type: ignore[no-untyped-def]
    group = f"skiff-ingest-batch-test-{uuid.uuid4().hex[:8]}"
    start_group_at_the_end(where, group)
    events = predictions(model, 30)
    publish(producer, events)
    first = ingest_to_end(where, group=group)
    assert first["predictions"] >= len(events)  # and whatever else was published meanwhile
    assert len(rows(session, model, events)) == len(events)
    second = ingest_to_end(where, group=group)
    assert second["start_offsets"] == first["end_offsets"]


def test_nothing_is_committed_while_cassandra_fails_and_the_batch_is_retried(  # type: ignore[no-untyped-def]
        where, session, producer, admin, model, monkeypatch, tmp_path) -> None:
    group = f"skiff-ingest-test-{uuid.uuid4().hex[:8]}"
    start_group_at_the_end(where, group)
    real = writer_module.CassandraWriter.write_batch
    calls: list[bool] = []
    committed_during_failures: list[dict[Any, Any]] = []

    def flaky(self, events):  # type: ignore[no-untyped-def]
        calls.append(True)
        if len(calls) <= 2:
            committed_during_failures.append(admin.list_consumer_group_offsets(group))
            raise writer_module.WriteFailed(1, len(events), RuntimeError("injected"))
        return real(self, events)

    monkeypatch.setattr(writer_module.CassandraWriter, "write_batch", flaky)
    monkeypatch.setattr(streaming, "BACKOFF_FIRST", 0.1)
    stop = threading.Event()
    ready = tmp_path / "ready.json"
    c = streaming.IngestConsumer(where, group=group, ready_file=ready, stop=stop)
    thread = threading.Thread(target=c.run, daemon=True)
    thread.start()
    try:
        eventually(ready.exists, "the test consumer joined its group")
        events = predictions(model, 5)
        ends = publish(producer, events)
        eventually(lambda: committed_past(admin, group, ends), "committed after the retries")
        assert len(rows(session, model, events)) == len(events)
        assert len(committed_during_failures) == 2
        for offsets in committed_during_failures:
            assert not any(offsets.get(tp) and offsets[tp].offset >= end for tp, end in ends.items())
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and not ready.exists()
