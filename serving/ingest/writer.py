"""Writes capture events to Cassandra: idempotent by request id, labels in any order.

Tables (compose/cassandra/schema.cql): ``prediction_events`` keyed
((model_name, day), event_time, request_id), so writing the same prediction again
overwrites its own row; ``prediction_labels`` by request_id, holding where the
event row is and the label, whichever arrived first.

A batch is written in two rounds, each with bounded concurrency:

1. every prediction's event row (in unlogged batches of one partition each: one
   model's day, applied by Cassandra as one mutation) and its location in
   ``prediction_labels`` (unlogged batches of 10); every label into
   ``prediction_labels`` (label, label_time);
2. one read of ``prediction_labels`` for the batch's request ids; each id that now
   has both a location and a label gets the label on its event row.

A label that comes before its prediction waits in ``prediction_labels`` and is
applied by the batch that writes the prediction. Because each side writes before it
reads, two writers (the streaming and the scheduled mode) racing on one request id
cannot both miss the other. Label cells are written with the label event's time as
their write timestamp, so a replayed older label never overwrites a newer one.

Cassandra-driver is the only dependency beyond skiff.bracelet (the Airflow venv
imports this too).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, Session
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from serving.ingest.batch import chunks
from skiff import cassandra_access
from skiff.bracelet.events import Label, Prediction
from skiff.cassandra_access import Login

# Tables are named with their keyspace (skiff, compose/cassandra/schema.cql): Cassandra warns
# about prepared statements that rely on the session's keyspace.
# Requests in flight at once per round; the driver queues nothing beyond this.
CONCURRENCY = 64
# Request ids per read of prediction_labels (one partition each, on the same coordinator).
LOOKUP_CHUNK = 100
# Event rows per unlogged batch. All rows of a batch share a partition, so Cassandra
# applies it as one mutation (and does not warn about its size); one request for
# many rows is what makes the Python driver fast enough (about 2x end to end).
ROWS_PER_BATCH = 50
# Locations (one partition each) per unlogged batch: Cassandra's default
# unlogged_batch_across_partitions_warn_threshold. Ten times fewer requests than one
# per row, for a coordinator fan-out that stays small on a real cluster.
LOCATIONS_PER_BATCH = 10

INSERT_EVENT = (
    "INSERT INTO skiff.prediction_events (model_name, day, event_time, request_id, model_version,"
    " features, prediction, probability, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Leaves label and label_time alone: a label stored earlier survives.
INSERT_LOCATION = (
    "INSERT INTO skiff.prediction_labels (request_id, model_name, day, event_time) VALUES (?, ?, ?, ?)")
STORE_LABEL = ("UPDATE skiff.prediction_labels USING TIMESTAMP ? SET label = ?, label_time = ?"
               " WHERE request_id = ?")
LOOKUP = ("SELECT request_id, model_name, day, event_time, label, label_time FROM skiff.prediction_labels"
          " WHERE request_id IN ?")
APPLY_LABEL = ("UPDATE skiff.prediction_events USING TIMESTAMP ? SET label = ?"
               " WHERE model_name = ? AND day = ? AND event_time = ? AND request_id = ?")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WriteFailed(Exception):
    """Cassandra did not acknowledge every statement of a batch; nothing may be committed."""

    def __init__(self, failed: int, total: int, first: BaseException) -> None:
        super().__init__(f"{failed} of {total} writes failed; first: {type(first).__name__}: {first}")
        self.failed = failed
        self.total = total
        self.first = first


@dataclass(frozen=True)
class WriteResult:
    predictions: int      # event rows written
    labels: int           # label events stored
    labels_applied: int   # event rows that got their label in this batch
    labels_pending: int   # labels of this batch whose prediction is not written yet
    statements: int
    seconds: float


def connect(host: str, port: int, who: Login, timeout: float = 10.0) -> Cluster:
    """A cluster handle for the writer as ``who``; the caller shuts it down.

    LOCAL_QUORUM: with one node it is one replica; on a real cluster it makes
    "acknowledged" mean a majority, and round 2 reads what round 1 wrote.
    """
    return cassandra_access.connect(host, port, who, timeout, consistency=ConsistencyLevel.LOCAL_QUORUM)


def to_naive_utc(t: datetime) -> datetime:
    """Cassandra's timestamp precision (milliseconds), UTC, as the driver reads it back."""
    # One replace, not two: these run twice per event and showed in the ingest's profile.
    return t.astimezone(UTC).replace(tzinfo=None, microsecond=t.microsecond // 1000 * 1000)


def day_of(t: datetime) -> str:
    """The partition day of an event time: its UTC date."""
    # date().isoformat() is the same text as strftime("%Y-%m-%d") at a fraction of its cost.
    return t.astimezone(UTC).date().isoformat()


def write_time(t: datetime) -> int:
    """A write timestamp (microseconds) from an event time at Cassandra's millisecond precision."""
    aware = t if t.tzinfo else t.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(milliseconds=1) * 1000


def event_row(p: Prediction, received_at: datetime) -> tuple[Any, ...]:
    return (p.model_name, day_of(p.time), to_naive_utc(p.time), p.request_id, p.model_version,
            json.dumps(p.features, sort_keys=True, separators=(",", ":")), float(p.prediction),
            float(p.probability), to_naive_utc(received_at))


def location_row(p: Prediction) -> tuple[Any, ...]:
    return (p.request_id, p.model_name, day_of(p.time), to_naive_utc(p.time))


def label_row(label: Label) -> tuple[Any, ...]:
    return (write_time(label.time), label.label, to_naive_utc(label.time), label.request_id)


def partition_batches(predictions: Iterable[Prediction],
                      size: int = ROWS_PER_BATCH) -> list[list[Prediction]]:
    """The predictions grouped by event partition (model, day), in chunks of at most ``size``."""
    groups: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for p in predictions:
        groups[(p.model_name, day_of(p.time))].append(p)
    return [list(chunk) for group in groups.values() for chunk in chunks(group, size)]


def label_updates(rows: Iterable[Any]) -> list[tuple[Any, ...]]:
    """APPLY_LABEL parameters for the looked-up rows that have both a location and a label."""
    updates = []
    for r in rows:
        if r.label is None or r.model_name is None or r.day is None or r.event_time is None:
            continue
        stamp = write_time(r.label_time) if r.label_time is not None else 0
        updates.append((stamp, r.label, r.model_name, r.day, r.event_time, r.request_id))
    return updates


class CassandraWriter:
    """Writes batches of capture events through prepared statements; see the module doc."""

    def __init__(self, session: Session, concurrency: int = CONCURRENCY) -> None:
        self.session = session
        self.concurrency = concurrency
        self.insert_event = session.prepare(INSERT_EVENT)
        self.insert_location = session.prepare(INSERT_LOCATION)
        self.store_label = session.prepare(STORE_LABEL)
        self.lookup = session.prepare(LOOKUP)
        self.apply_label = session.prepare(APPLY_LABEL)

    def _run(self, statements: list[tuple[Any, Any]]) -> list[Any]:
        """Execute all, at most ``concurrency`` at a time; raise WriteFailed unless all succeeded."""
        if not statements:
            return []
        results = execute_concurrent(self.session, statements, concurrency=self.concurrency,
                                     raise_on_first_error=False, results_generator=False)
        failures = [r.result_or_exc for r in results if not r.success]
        if failures:
            raise WriteFailed(len(failures), len(statements), failures[0])
        return [r.result_or_exc for r in results]

    def write_batch(self, events: Sequence[Prediction | Label]) -> WriteResult:
        """Write every event; returns only once Cassandra acknowledged every statement."""
        t0 = time.monotonic()
        received_at = datetime.now(UTC)
        predictions = [e for e in events if isinstance(e, Prediction)]
        labels = [e for e in events if isinstance(e, Label)]

        first: list[tuple[Any, Any]] = []
        for group in partition_batches(predictions):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for p in group:
                batch.add(self.insert_event, event_row(p, received_at))
            first.append((batch, ()))
        for locations in chunks(predictions, LOCATIONS_PER_BATCH):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for p in locations:
                batch.add(self.insert_location, location_row(p))
            first.append((batch, ()))
        first += [(self.store_label, label_row(label)) for label in labels]
        self._run(first)

        ids = sorted({e.request_id for e in events})
        rows = [row for result in self._run([(self.lookup, (list(chunk),))
                                             for chunk in chunks(ids, LOOKUP_CHUNK)])
                for row in result]
        updates = label_updates(rows)
        self._run([(self.apply_label, u) for u in updates])

        located = {r.request_id for r in rows if r.model_name is not None and r.event_time is not None}
        pending = {lb.request_id for lb in labels if lb.request_id not in located}
        return WriteResult(predictions=len(predictions), labels=len(labels),
                           labels_applied=len(updates), labels_pending=len(pending),
                           statements=len(first) + -(-len(ids) // LOOKUP_CHUNK) + len(updates),
                           seconds=time.monotonic() - t0)
