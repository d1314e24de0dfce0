"""One batch of Kafka records through the capture pipeline, shared by both ingest modes.

The pure parts (what is a dead letter, which offsets to commit, how to cut a batch)
have no I/O so the unit tests run them without services. :func:`process_batch`
does the I/O through the objects it is given: a writer and a dead-letter sink.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from skiff.bracelet.events import DEAD_LETTER_TOPIC, BadEvent, Label, Prediction, decode

# Reasons longer than this are cut: a header is for a human, not a dump.
MAX_REASON = 500

T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    """The parts of a Kafka record the pipeline uses."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, record: Any) -> Record:
        """From kafka-python's ConsumerRecord."""
        return cls(record.topic, record.partition, record.offset, record.key, record.value)


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: str


@dataclass(frozen=True)
class Split:
    """A batch sorted into events to write and messages for the dead-letter topic."""

    events: list[Prediction | Label] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def from_polled(polled: dict[Any, list[Any]]) -> list[Record]:
    """KafkaConsumer.poll()'s answer as one list, by partition then offset."""
    records = [Record.of(r) for batch in polled.values() for r in batch]
    records.sort(key=lambda r: (r.topic, r.partition, r.offset))
    return records


def check(value: bytes | None) -> Prediction | Label:
    """Decode one message value; BadEvent says why it is not a capture event."""
    if value is None:
        raise BadEvent("empty message (no value)")
    try:
        event = decode(value)
    except BadEvent:
        raise
    except Exception as exc:  # a message must never crash the consumer: it would block its partition
        raise BadEvent(f"undecodable: {type(exc).__name__}: {exc}") from None
    if isinstance(event, Prediction) and not event.model_name:
        raise BadEvent("field 'model_name' is empty")
    return event


def split(records: Iterable[Record]) -> Split:
    """Decode each record: good ones become events, bad ones dead letters (in offset order)."""
    out = Split()
    for record in records:
        try:
            out.events.append(check(record.value))
        except BadEvent as exc:
            out.dead.append(DeadLetter(record, str(exc)[:MAX_REASON] or "bad event"))
    return out


def next_offsets(records: Iterable[Record]) -> dict[tuple[str, int], int]:
    """What to commit once ``records`` are processed: per partition, last offset + 1."""
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = max(offsets.get(key, 0), r.offset + 1)
    return offsets


def first_offsets(records: Iterable[Record]) -> dict[tuple[str, int], int]:
    """Where to seek back to replay ``records``: per partition, the lowest offset."""
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = min(offsets.get(key, r.offset), r.offset)
    return offsets


def before(records: Iterable[Record], end: dict[tuple[str, int], int]) -> list[Record]:
    """The records below the end offset of their partition (the scheduled mode's snapshot)."""
    return [r for r in records if r.offset < end.get((r.topic, r.partition), 0)]


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def dead_letter_headers(dead: DeadLetter, group: str) -> list[tuple[str, bytes]]:
    r = dead.record
    return [("reason", dead.reason.encode()),
            ("source_topic", r.topic.encode()),
            ("source_partition", str(r.partition).encode()),
            ("source_offset", str(r.offset).encode()),
            ("consumer_group", group.encode())]


class Writer(Protocol):
    def write_batch(self, events: Sequence[Prediction | Label]) -> Any: ...


class DeadLetterSink(Protocol):
    def send(self, dead: DeadLetter) -> None: ...

    def flush(self) -> None: ...


class KafkaDeadLetters:
    """Dead letters to DEAD_LETTER_TOPIC: the original key and bytes, the reason in headers.

    :meth:`flush` waits for every send and raises the first failure, so a batch is
    committed only once its dead letters are on the topic.
    """

    def __init__(self, producer: Any, group: str, timeout: float = 30.0) -> None:
        self.producer = producer
        self.group = group
        self.timeout = timeout
        self._futures: list[Any] = []

    def send(self, dead: DeadLetter) -> None:
        self._futures.append(self.producer.send(
            DEAD_LETTER_TOPIC, key=dead.record.key, value=dead.record.value,
            headers=dead_letter_headers(dead, self.group)))

    def flush(self) -> None:
        futures, self._futures = self._futures, []
        if not futures:
            return
        self.producer.flush(timeout=self.timeout)
        for future in futures:
            future.get(timeout=self.timeout)  # raises the send's KafkaError


@dataclass(frozen=True)
class BatchResult:
    records: int
    predictions: int
    labels: int
    dead: int
    labels_applied: int
    labels_pending: int
    offsets: dict[tuple[str, int], int]
    oldest_event: datetime | None
    newest_event: datetime | None


def process_batch(records: Sequence[Record], writer: Writer, dead_letters: DeadLetterSink) -> BatchResult:
    """Write the batch's events, then send its dead letters; raises if either failed.

    Only when this returns may the caller commit ``result.offsets``. Dead letters are
    sent after the write, so a batch retried after a Cassandra error does not send
    them twice (a batch retried after a failed send may: the DLQ is at least once).
    """
    parts = split(records)
    written = writer.write_batch(parts.events) if parts.events else None
    for dead in parts.dead:
        dead_letters.send(dead)
    dead_letters.flush()
    times = [e.time for e in parts.events]
    return BatchResult(
        records=len(records),
        predictions=sum(isinstance(e, Prediction) for e in parts.events),
        labels=sum(isinstance(e, Label) for e in parts.events),
        dead=len(parts.dead),
        labels_applied=written.labels_applied if written else 0,
        labels_pending=written.labels_pending if written else 0,
        offsets=next_offsets(records),
        oldest_event=min(times) if times else None,
        newest_event=max(times) if times else None,
    )
