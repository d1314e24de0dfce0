"""Capture: how fast events get from Kafka into Cassandra, and how late a request's row lands.

``python -m benchmarks capture_throughput [--repeat 3] [--events 100000] [--lag-seconds 30]``

1. Throughput. ``--events`` prediction events are published first (as fast as the
   producer goes) to a topic of this benchmark's own (``capture-bench``, 3 partitions
   like the platform's), then the streaming consumer
   (serving.ingest.consumer.IngestConsumer, the code of the ``ingest`` service) is
   started in this process under a fresh group: the time from its partition
   assignment until it has committed the last offset (it commits only what Cassandra
   acknowledged), as events/s. Then the rows are counted: every event must be a row.
   Publishing first keeps the producer off the consumer's core. Baseline, same
   process, same messages: a plain KafkaConsumer reading them with no writing, with
   and without decoding (what Kafka and the client cost on their own).
2. Request-to-row lag. vegeta sends 200 predictions/s for ``--lag-seconds`` to the
   stack's model server; the stack's own path (spool, publisher, Kafka, the ``ingest``
   service) writes them. Per answered request, the row's ``received_at`` (written by
   the writer) minus its ``event_time`` (the server's time of the prediction), at
   Cassandra's millisecond precision.

Each throughput figure is the median of ``--repeat`` runs. Prints, never asserts.
The benchmark's own rows and topic are removed at the end (the lag phase's rows
are predictions of the served model like any other and stay).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
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
from serving.ingest.config import GROUP, Endpoints, endpoints
from serving.ingest.consumer import IngestConsumer
from serving.ingest.offsets import acked_ends, committed_past
from serving.ingest.writer import connect, day_of
from skiff.bracelet.events import TOPIC as CAPTURE_TOPIC
from skiff.bracelet.events import Prediction, encode
from skiff.native.context import Context
from skiff.services.kafka import create_topics

TOPIC = "capture-bench"
RATE = 200
TARGET_EVENTS_S, TARGET_LAG_P99_MS = 5000, 2000
FEATURES = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalch", "exang", "oldpeak",
            "slope", "ca", "thal")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks capture_throughput")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs; medians are printed")
    parser.add_argument("--events", type=int, default=100_000, help="events per throughput run")
    parser.add_argument("--lag-seconds", type=float, default=30, help="length of the 200 req/s run")
    return parser.parse_known_args(sys.argv[1:])[0]


def events(model: str, n: int) -> list[Prediction]:
    now = datetime.now(UTC)
    return [Prediction(uuid.uuid4(), now + timedelta(microseconds=i), model, "7",
                       {f: float((i * 7 + k) % 97) for k, f in enumerate(FEATURES)}, i % 2,
                       0.5 + (i % 50) / 100)
            for i in range(n)]


def wait_committed(admin: KafkaAdminClient, group: str, ends: dict[TopicPartition, int],
                   timeout: float = 1800) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if committed_past(admin, group, ends):
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"group {group} did not commit {ends} in {timeout:.0f}s")


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        return c.end_offsets(parts)
    finally:
        c.close()


def capture_settled(ctx: Context, timeout: float = 300) -> None:
    """Wait until the model server's spool is empty and the ingest service committed the topic's end."""
    import httpx

    from skiff.services import kafka, model_server

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{model_server.url(ctx)}/metrics", timeout=10).text
        except httpx.HTTPError:  # restarting: its spool is read again when it is back
            time.sleep(1)
            continue
        depth = next((float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("skiff_model_server_spool_depth")), 0.0)
        if depth == 0:
            break
        time.sleep(0.5)
    bootstrap = kafka.bootstrap_servers(ctx)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        ends = end_offsets(bootstrap, CAPTURE_TOPIC)
        while time.monotonic() < deadline:
            if committed_past(admin, GROUP, ends):
                return
            time.sleep(0.5)
    finally:
        admin.close()
    print(f"  (capture did not drain within {timeout:.0f} s; the next figures carry its backlog)")


def raw_consume(where: Endpoints, start: dict[TopicPartition, int], end: dict[TopicPartition, int],
                decode: bool) -> float:
    """Seconds to read the messages between start and end (and decode them), writing nothing."""
    c = KafkaConsumer(bootstrap_servers=where.kafka, enable_auto_commit=False, max_poll_records=2000)
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


def count_rows(session: Any, model: str, made: list[Prediction]) -> int:
    return sum(session.execute(
        "SELECT COUNT(*) FROM skiff.prediction_events WHERE model_name = %s AND day = %s",
        (model, d), timeout=120).one()[0] for d in sorted({day_of(e.time) for e in made}))


def throughput_run(where: Endpoints, admin: KafkaAdminClient, session: Any, n: int) -> dict[str, float]:
    """One run: publish n events, drain them with a fresh consumer group, count the rows."""
    run = uuid.uuid4().hex[:8]
    group, model = f"capture-bench-{run}", f"capture-bench-{run}"
    producer = KafkaProducer(bootstrap_servers=where.kafka, acks="all", linger_ms=10,
                             batch_size=256 * 1024, max_in_flight_requests_per_connection=5)
    start = end_offsets(where.kafka, TOPIC)
    # The new group starts where this run's messages do, not at earlier runs'.
    seed = KafkaConsumer(bootstrap_servers=where.kafka, group_id=group, enable_auto_commit=False)
    seed.assign(list(start))
    seed.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in start.items()})
    seed.close(autocommit=False)
    made = events(model, n)
    encoded = [encode(e) for e in made]
    t0 = time.monotonic()
    ends = acked_ends([producer.send(TOPIC, key=k, value=v) for k, v in encoded])
    t_pub = time.monotonic()
    producer.close()
    stop = threading.Event()
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    consumer = IngestConsumer(where, group=group, ready_file=ready, stop=stop, topic=TOPIC)
    thread = threading.Thread(target=consumer.run, daemon=True)
    try:
        thread.start()
        while not ready.exists():  # joined the group, partitions assigned
            time.sleep(0.01)
        t_joined = time.monotonic()
        cpu0 = cpu_by_role()
        t_done = wait_committed(admin, group, ends)
        cpu = {role: (spent - cpu0.get(role, 0.0)) * 1000 / n for role, spent in cpu_by_role().items()}
    finally:
        stop.set()
        thread.join(timeout=60)
    rows = count_rows(session, model, made)
    raw = raw_consume(where, start, ends, decode=False)
    decoded = raw_consume(where, start, ends, decode=True)
    for d in sorted({day_of(e.time) for e in made}):
        session.execute("DELETE FROM skiff.prediction_events WHERE model_name = %s AND day = %s",
                        (model, d), timeout=60)
    delete_locations(session, made)
    return {"publish": n / (t_pub - t0), "ingest": n / (t_done - t_joined), "rows": rows,
            "lost": n - rows, "raw": n / raw, "decoded": n / decoded,
            **{f"cpu_{role}": ms for role, ms in cpu.items()}}


ROLES = {"cassandra": "CassandraDaemon", "kafka": "kafka.Kafka"}


def cpu_by_role() -> dict[str, float]:
    """CPU seconds so far of this process (the consumer) and of the Cassandra and Kafka JVMs."""
    import psutil

    me = psutil.Process().cpu_times()
    spent = {"ingest": me.user + me.system}
    for p in psutil.process_iter(["cmdline", "cpu_times"]):
        cmd = " ".join(p.info["cmdline"] or [])
        for role, marker in ROLES.items():
            if marker in cmd and p.info["cpu_times"] is not None:
                spent[role] = spent.get(role, 0.0) + p.info["cpu_times"].user + p.info["cpu_times"].system
    return spent


def delete_locations(session: Any, made: list[Prediction]) -> None:
    from cassandra.concurrent import execute_concurrent_with_args

    delete = session.prepare("DELETE FROM skiff.prediction_labels WHERE request_id = ?")
    execute_concurrent_with_args(session, delete, [(e.request_id,) for e in made], concurrency=64)


def lag_run(ctx: Context, session: Any, seconds: float) -> list[float] | str:
    """Request-to-row lag (ms) of predictions sent to the stack's model server at RATE/s."""
    import httpx

    from benchmarks import loadgen
    from benchmarks.rest_scoring import records
    from skiff.keycloak import device_token
    from skiff.services import model_server

    url = model_server.url(ctx)
    try:
        ready = httpx.get(f"{url}/readyz", timeout=10)
    except httpx.HTTPError as exc:
        return f"the model server is not reachable: {exc}"
    if ready.status_code != 200:
        return f"the model server has no model: {ready.text}"
    model = ready.json()["model"]["name"]
    capture_settled(ctx)
    target = loadgen.Target(f"{url}/v1/predict", json.dumps(records()[0]).encode(),
                            {"Content-Type": "application/json",
                             "Authorization": f"Bearer {device_token(ctx.settings)}"})
    result = loadgen.attack(loadgen.binary(ctx), target, seconds=seconds, rate=RATE, bodies=True)
    ids = set()
    for body in result.bodies:
        try:
            ids.add(uuid.UUID(json.loads(body)["request_id"]))
        except (ValueError, KeyError, TypeError):
            continue
    capture_settled(ctx)
    now = datetime.now(UTC)
    lags = []
    for day in sorted({day_of(now - timedelta(seconds=seconds + 120)), day_of(now)}):
        for r in session.execute(
                "SELECT request_id, event_time, received_at FROM skiff.prediction_events"
                " WHERE model_name = %s AND day = %s AND event_time >= %s",
                (model, day, now - timedelta(seconds=seconds + 120)), timeout=60):
            if r.request_id in ids:
                lags.append((r.received_at - r.event_time).total_seconds() * 1000)
    if len(lags) < len(ids):
        print(f"  ! {len(ids) - len(lags)} of {len(ids)} answered requests have no row")
    return lags or "no rows found"


def main() -> None:
    opts = options()
    logging.basicConfig(level=logging.WARNING)
    where = endpoints()
    try:
        create_topics(where.kafka, [TOPIC])
    except Exception as exc:
        print(f"capture_throughput: skipped, needs the running stack (`skiff up`): Kafka at {where.kafka}: "
              f"{type(exc).__name__}: {exc}")
        return
    print(f"capture_throughput: {opts.repeat} runs of {opts.events} events, then {RATE} req/s for "
          f"{opts.lag_seconds:.0f} s; load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    admin = KafkaAdminClient(bootstrap_servers=where.kafka)
    cluster = connect(where.cassandra_host, where.cassandra_port, where.cassandra_login, timeout=60)
    session = cluster.connect()
    runs: list[dict[str, float]] = []
    try:
        for i in range(opts.repeat):
            runs.append(throughput_run(where, admin, session, opts.events))
            print(f"  run {i + 1}/{opts.repeat}: ingest {runs[-1]['ingest']:.0f} events/s, "
                  f"{runs[-1]['rows']:.0f} rows of {opts.events}", flush=True)
        lags = lag_run(Context.discover(), session, opts.lag_seconds)
    finally:
        try:
            admin.delete_topics([TOPIC])
        except Exception as exc:
            print(f"  (could not delete topic {TOPIC}: {exc})")
        admin.close()
        cluster.shutdown()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"capture_throughput (Kafka -> serving.ingest -> Cassandra, one consumer process, "
          f"3 partitions; medians of {opts.repeat} runs of {opts.events} events)")
    print(f"  publish (kafka-python, acks=all):  {med('publish'):8.0f} events/s")
    print(f"  ingest the backlog:                {med('ingest'):8.0f} events/s  "
          "[partitions assigned -> last offset committed]")
    print(f"  rows written / lost:               {sum(r['rows'] for r in runs):8.0f} / "
          f"{sum(r['lost'] for r in runs):.0f}")
    print(f"  baseline: raw Kafka consume:       {med('raw'):8.0f} events/s  [same messages, no decode, "
          f"no write]  ingest/raw {med('ingest') / med('raw'):.2f}")
    print(f"  raw consume + decode:              {med('decoded'):8.0f} events/s")
    cpu = {role: med(f"cpu_{role}") for role in ("ingest", *ROLES) if all(f"cpu_{role}" in r for r in runs)}
    total = sum(cpu.values())
    print("  CPU ms per event while draining:   " + ", ".join(f"{k} {v:.3f}" for k, v in cpu.items())
          + f"; total {total:.3f} -> at most {os.cpu_count() or 1} cores / total = "
          f"{(os.cpu_count() or 1) * 1000 / total if total else 0:.0f} events/s with nothing else running")
    if isinstance(lags, str):
        print(f"  lag: skipped, {lags}")
    else:
        print(f"  request-to-row lag at {RATE} req/s for {opts.lag_seconds:.0f} s ({len(lags)} rows), "
              f"ms: p50 {pct(lags, 50):.0f}  p90 {pct(lags, 90):.0f}  p99 {pct(lags, 99):.0f}  "
              f"max {max(lags):.0f}  mean {statistics.fmean(lags):.0f}")
    p99 = None if isinstance(lags, str) else pct(lags, 99)
    print(f"  targets: >= {TARGET_EVENTS_S} events/s: {med('ingest'):.0f} "
          f"({'met' if med('ingest') >= TARGET_EVENTS_S else 'NOT met'}); lag p99 < {TARGET_LAG_P99_MS} ms: "
          f"{'-' if p99 is None else f'{p99:.0f}'} "
          f"({'met' if p99 is not None and p99 < TARGET_LAG_P99_MS else 'NOT met'})")


if __name__ == "__main__":
    main()
