"""The ingest pipeline's pure parts: dead-letter decisions, offsets, batch cutting."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from serving.ingest.batch import (
    DeadLetter,
    KafkaDeadLetters,
    Record,
    before,
    chunks,
    dead_letter_headers,
    first_offsets,
    next_offsets,
    process_batch,
    split,
)
from skiff.bracelet.events import DEAD_LETTER_TOPIC, TOPIC, Label, Prediction, encode

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def prediction(**changes: object) -> Prediction:
    fields: dict[str, object] = dict(request_id=uuid.uuid4(), time=NOW, model_name="bracelet",
                                     model_version="4", features={"age": 61.0}, prediction=1,
                                     probability=0.8)
    fields.update(changes)
    return Prediction(**fields)  # type: ignore[arg-type]


def record(value: bytes | None, partition: int = 0, offset: int = 0) -> Record:
    return Record(TOPIC, partition, offset, b"key", value)


def test_capture_events_are_decoded_in_offset_order() -> None:
    p = prediction()
    label = Label(p.request_id, NOW, 1)
    out = split([record(encode(p)[1], offset=0), record(encode(label)[1], offset=1)])
    assert out.events == [p, label]
    assert out.dead == []


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (None, "empty message"),
    (json.dumps({"type": "prediction", "request_id": "nope", "time": NOW.isoformat()}).encode(),
     "badly formed hexadecimal UUID"),
    (json.dumps({"type": "label", "request_id": str(uuid.uuid4()), "time": "2026-03-01T12:00:00",
                 "label": 1}).encode(), "no time zone"),
    (json.dumps({"type": "label", "request_id": str(uuid.uuid4()), "time": NOW.isoformat(),
                 "label": 7}).encode(), "label must be 0 or 1"),
    (json.dumps({"type": "click", "request_id": str(uuid.uuid4()), "time": NOW.isoformat()}).encode(),
     "unknown event type"),
    (encode(prediction(model_name=""))[1], "'model_name' is empty"),
    (b"\xff\xfe", "not JSON"),
])
def test_bad_messages_become_dead_letters_with_the_reason(value: bytes | None, reason: str) -> None:
    good = prediction()
    out = split([record(value, offset=3), record(encode(good)[1], offset=4)])
    assert out.events == [good]
    assert len(out.dead) == 1
    assert out.dead[0].record.offset == 3
    assert reason in out.dead[0].reason


def test_a_decoder_crash_is_a_dead_letter_not_a_stuck_partition() -> None:
    # json.loads raises RecursionError, which decode() does not turn into BadEvent.
    out = split([record(b"[" * 100_000)])
    assert out.events == [] and len(out.dead) == 1
    assert "RecursionError" in out.dead[0].reason


def test_dead_letter_headers_name_the_reason_and_the_source() -> None:
    dead = DeadLetter(Record(TOPIC, 2, 41, b"k", b"x"), "not JSON: boom")
    assert dict(dead_letter_headers(dead, "skiff-ingest")) == {
        "reason": b"not JSON: boom", "source_topic": TOPIC.encode(), "source_partition": b"2",
        "source_offset": b"41", "consumer_group": b"skiff-ingest"}


def test_offsets_to_commit_and_to_replay_are_per_partition() -> None:
    records = [record(b"", 0, 5), record(b"", 1, 9), record(b"", 0, 7), record(b"", 0, 6)]
    assert next_offsets(records) == {(TOPIC, 0): 8, (TOPIC, 1): 10}
    assert first_offsets(records) == {(TOPIC, 0): 5, (TOPIC, 1): 9}


def test_the_scheduled_mode_stops_at_its_end_snapshot() -> None:
    records = [record(b"", 0, 4), record(b"", 0, 5), record(b"", 1, 0), record(b"", 2, 0)]
    kept = before(records, {(TOPIC, 0): 5, (TOPIC, 1): 1})
    assert [(r.partition, r.offset) for r in kept] == [(0, 4), (1, 0)]


def test_chunks_cover_everything_once() -> None:
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []
    with pytest.raises(ValueError):
        list(chunks([1], 0))


class FakeWriter:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.written: list[object] = []

    def write_batch(self, events):  # type: ignore[no-untyped-def]
        if self.fail:
            raise RuntimeError("cassandra is down")
        self.written += events

        class Result:
            labels_applied = 1
            labels_pending = 0
        return Result()


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.flushed = 0

    def send(self, dead: DeadLetter) -> None:
        self.sent.append(dead)

    def flush(self) -> None:
        self.flushed += 1


def test_a_batch_writes_the_good_sends_the_bad_and_commits_past_both() -> None:
    p = prediction()
    records = [record(encode(p)[1], 0, 10), record(b"junk", 0, 11),
               record(encode(Label(p.request_id, NOW, 0))[1], 1, 3)]
    writer, sink = FakeWriter(), FakeSink()
    result = process_batch(records, writer, sink)
    assert len(writer.written) == 2 and [d.record.offset for d in sink.sent] == [11]
    assert sink.flushed == 1
    assert (result.records, result.predictions, result.labels, result.dead) == (3, 1, 1, 1)
    assert result.offsets == {(TOPIC, 0): 12, (TOPIC, 1): 4}
    assert result.oldest_event == result.newest_event == NOW


def test_no_dead_letter_is_sent_when_the_write_fails() -> None:
    sink = FakeSink()
    with pytest.raises(RuntimeError, match="cassandra is down"):
        process_batch([record(encode(prediction())[1]), record(b"junk", 0, 1)], FakeWriter(fail=True), sink)
    assert sink.sent == []


def test_a_batch_of_only_garbage_writes_nothing() -> None:
    writer, sink = FakeWriter(), FakeSink()
    result = process_batch([record(b"junk", 0, 0)], writer, sink)
    assert writer.written == [] and len(sink.sent) == 1 and result.offsets == {(TOPIC, 0): 1}


class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error:
            raise self.error


class FakeProducer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, dict[str, object]]] = []

    def send(self, topic: str, **kwargs: object) -> FakeFuture:
        self.sent.append((topic, kwargs))
        return FakeFuture(self.error)

    def flush(self, timeout: float) -> None:
        pass


def test_dead_letters_keep_the_original_bytes_and_key() -> None:
    producer = FakeProducer()
    sink = KafkaDeadLetters(producer, "g")
    sink.send(DeadLetter(Record(TOPIC, 1, 2, b"the-key", b"\x00raw"), "why"))
    sink.flush()
    ((topic, sent),) = producer.sent
    assert topic == DEAD_LETTER_TOPIC
    assert (sent["key"], sent["value"]) == (b"the-key", b"\x00raw")
    assert ("reason", b"why") in sent["headers"]  # type: ignore[operator]


def test_a_failed_dead_letter_send_fails_the_batch() -> None:
    sink = KafkaDeadLetters(FakeProducer(error=TimeoutError("no broker")), "g")
    sink.send(DeadLetter(record(b"x"), "why"))
    with pytest.raises(TimeoutError):
        sink.flush()
