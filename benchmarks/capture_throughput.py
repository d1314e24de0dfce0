"""Capture ingest: how fast events get from Kafka into Cassandra, and how late they land.

Runs against the developer's running stack (Kafka and Cassandra healthy), with the
streaming consumer (serving.ingest.consumer.IngestConsumer, the same code as the
``ingest`` service) in this process, on a topic of its own (``capture-bench``,
3 partitions like the platform's) so the stack's ingest service is not involved.

1. Throughput: 20,000 prediction events published as fast as the producer goes,
   then the consumer started: the time from its partition assignment until it has
   committed the last one (it commits only what Cassandra acknowledged), as events/s.
   Publishing first keeps the producer off the consumer's core (the GIL).
   Baseline: the raw consume rate of the same 20,000 messages with no writing
   (a plain KafkaConsumer in this process), and with decoding.
2. Lag: 200 events/s for 30 s; per event, received_at (written by the writer) minus
   the event's time, as percentiles. Both are at Cassandra's millisecond precision.

Prints, never asserts. The rows and the topic it made are removed at the end.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from serving.ingest.batch import check
from serving.ingest.config import Endpoints, endpoints
from serving.ingest.consumer import IngestConsumer
from serving.ingest.writer import connect, day_of
from skiff.bracelet.events import Prediction, encode
from skiff.services.kafka import create_topics

TOPIC = "capture-bench"
N = 20_000
RATE, SECONDS = 200, 30
FEATURES = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalch", "exang", "oldpeak",
            "slope", "ca", "thal")


def events(model: str, n: int) -> list[Prediction]:
    now = datetime.now(UTC)
    return [Prediction(uuid.uuid4(), now + timedelta(microseconds=i), model, "7",
                       {f: float((i * 7 + k) % 97) for k, f in enumerate(FEATURES)}, i % 2,
                       0.5 + (i % 50) / 100)
            for i in range(n)]


def wait_committed(admin: KafkaAdminClient, group: str, ends: dict[TopicPartition, int],
                   timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = admin.list_consumer_group_offsets(group)
        if all(tp in done and done[tp].offset >= end for tp, end in ends.items()):
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"group {group} did not commit {ends} in {timeout:.0f}s")


def sent_ends(futures: list[Any]) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = {}
    for f in futures:
        meta = f.get(timeout=60)
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


def end_offsets(where: Endpoints) -> dict[TopicPartition, int]:
    c = KafkaConsumer(bootstrap_servers=where.kafka)
    try:
        parts = [TopicPartition(TOPIC, p) for p in c.partitions_for_topic(TOPIC)]
        return c.end_offsets(parts)
    finally:
        c.close()


def raw_consume(where: Endpoints, start: dict[TopicPartition, int], end: dict[TopicPartition, int],
                decode: bool) -> float:
    """Seconds to read the messages between start and end (and decode them), writing nothing."""
    c = KafkaConsumer(bootstrap_servers=where.kafka, enable_auto_commit=False, max_poll_records=500)
    c.assign(list(end))
    for tp in end:
        c.seek(tp, start.get(tp, 0))
    want = sum(end[tp] - start.get(tp, 0) for tp in end)
    got = 0
    t0 = time.monotonic()
    while got < want:
        for batch in c.poll(timeout_ms=1000).values():
            for r in batch:
                if r.offset < end[TopicPartition(r.topic, r.partition)]:
                    got += 1
                    if decode:
                        check(r.value)
    elapsed = time.monotonic() - t0
    c.close()
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    where = endpoints()
    run = uuid.uuid4().hex[:8]
    group = f"capture-bench-{run}"
    try:
        create_topics(where.kafka, [TOPIC])
    except Exception as exc:
        print(f"capture_throughput: skipped, needs the running stack (`skiff up`): Kafka at {where.kafka}: "
              f"{type(exc).__name__}: {exc}")
        return
    admin = KafkaAdminClient(bootstrap_servers=where.kafka)
    cluster = connect(where.cassandra_host, where.cassandra_port, timeout=60)
    session = cluster.connect()
    producer = KafkaProducer(bootstrap_servers=where.kafka, acks="all", linger_ms=10,
                             batch_size=256 * 1024, max_in_flight_requests_per_connection=5)
    stop = threading.Event()
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    consumer = IngestConsumer(where, group=group, ready_file=ready, stop=stop, topic=TOPIC)
    thread = threading.Thread(target=consumer.run, daemon=True)
    made: list[Prediction] = []
    try:
        # 1. Throughput: publish first, then time the consumer draining the backlog.
        start = end_offsets(where)
        # The new group starts where this run's messages do, not at earlier runs'.
        seed = KafkaConsumer(bootstrap_servers=where.kafka, group_id=group, enable_auto_commit=False)
        seed.assign(list(start))
        seed.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in start.items()})
        seed.close(autocommit=False)
        batch = events(f"capture-bench-{run}", N)
        made += batch
        encoded = [encode(e) for e in batch]
        t0 = time.monotonic()
        futures = [producer.send(TOPIC, key=k, value=v) for k, v in encoded]
        producer.flush()
        t_pub = time.monotonic()
        ends = sent_ends(futures)
        thread.start()
        while not ready.exists():  # joined the group, partitions assigned
            time.sleep(0.01)
        t_joined = time.monotonic()
        t_done = wait_committed(admin, group, ends)
        days = sorted({day_of(e.time) for e in batch})
        count = sum(session.execute(
            "SELECT COUNT(*) FROM skiff.prediction_events WHERE model_name = %s AND day = %s",
            (batch[0].model_name, d), timeout=60).one()[0] for d in days)
        raw = raw_consume(where, start, ends, decode=False)
        decoded = raw_consume(where, start, ends, decode=True)

        # 2. Lag at a steady rate.
        lag_batch = events(f"capture-bench-lag-{run}", RATE * SECONDS)
        made += lag_batch
        futures = []
        t_start = time.monotonic()
        for i, e in enumerate(lag_batch):
            due = t_start + i / RATE
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            stamped = Prediction(e.request_id, datetime.now(UTC), e.model_name, e.model_version,
                                 e.features, e.prediction, e.probability)
            lag_batch[i] = stamped
            k, v = encode(stamped)
            futures.append(producer.send(TOPIC, key=k, value=v))
        producer.flush()
        sent_for = time.monotonic() - t_start
        wait_committed(admin, group, sent_ends(futures))
        lags = []
        for d in sorted({day_of(e.time) for e in lag_batch}):
            for r in session.execute(
                    "SELECT event_time, received_at FROM skiff.prediction_events"
                    " WHERE model_name = %s AND day = %s", (lag_batch[0].model_name, d), timeout=60):
                lags.append((r.received_at - r.event_time).total_seconds() * 1000)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=60)
        producer.close()
        cleanup(session, admin, made)
        admin.close()
        cluster.shutdown()

    print("capture_throughput (Kafka -> serving.ingest -> Cassandra, one process, 3 partitions)")
    print(f"  publish {N} events:              {t_pub - t0:6.2f} s  ({N / (t_pub - t0):8.0f} events/s)")
    print(f"  ingest the backlog ({count} rows): {t_done - t_joined:6.2f} s  "
          f"({N / (t_done - t_joined):8.0f} events/s)  [partitions assigned -> last offset committed]")
    print(f"  baseline: raw Kafka consume:      {raw:6.2f} s  ({N / raw:8.0f} events/s)"
          "  [same messages, no decode, no write]")
    print(f"  raw consume + decode:             {decoded:6.2f} s  ({N / decoded:8.0f} events/s)")
    print(f"  lag at {RATE}/s for {SECONDS}s ({len(lags)} rows, sent in {sent_for:.1f}s), "
          "event time -> received_at, ms:")
    print(f"    p50 {pct(lags, 50):.0f}  p90 {pct(lags, 90):.0f}  p99 {pct(lags, 99):.0f}  "
          f"max {max(lags):.0f}  mean {statistics.fmean(lags):.0f}")


def cleanup(session: Any, admin: KafkaAdminClient, made: list[Prediction]) -> None:
    from cassandra.concurrent import execute_concurrent_with_args

    partitions = sorted({(e.model_name, day_of(e.time)) for e in made})
    for model, day in partitions:
        session.execute("DELETE FROM skiff.prediction_events WHERE model_name = %s AND day = %s",
                        (model, day), timeout=60)
    delete = session.prepare("DELETE FROM skiff.prediction_labels WHERE request_id = ?")
    execute_concurrent_with_args(session, delete, [(e.request_id,) for e in made], concurrency=64)
    try:
        admin.delete_topics([TOPIC])
    except Exception as exc:
        print(f"  (could not delete topic {TOPIC}: {exc})")


if __name__ == "__main__":
    main()
