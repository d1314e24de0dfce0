"""Events: how late an emitted event reaches a browser, and how fast a burst gets stored.

``python -m benchmarks event_delivery [--repeat 1] [--events 500] [--rate 50] [--burst 2000] [--threads 1]``

The platform's live events path on the running stack: ``skiff.events`` (Kafka topic
``platform-events``, acks=all, one call waits for its acknowledgement) -> the
``notifications`` service (Kafka consumer -> PostgreSQL -> LISTEN/NOTIFY -> server-sent
events). A realm user of this benchmark's own (``bench-ev-<hex>``, data scientist) emits
to fresh private runs of theirs and reads them back with their bearer token, as the
console does.

1. Emit-to-browser latency. An SSE stream (httpx) is open on
   ``GET /api/v1/runs/<run>/stream`` of a run with no event yet; ``--events`` log events
   are emitted with ``skiff.events.log(..., run=, user=)`` at a steady ``--rate`` per
   second (each leaves on schedule, or at once when the previous acknowledgement came
   late). Per event: from the start of the emit() call to the stream's ``data:`` line
   arriving in this process: p50/p95/p99/max, plus emit() itself (Kafka's
   acknowledgement). Baseline, same process, same pacing and JSON: a plain kafka-python
   producer (the emitter's settings) and a plain consumer on a throwaway topic
   (``events-bench-<hex>``, 3 partitions like the platform's): send start to the
   consumer's poll returning it.
2. Throughput. ``--burst`` log events are emitted as fast as ``--threads`` threads of
   emit() go (1: a notebook's loop), then ``GET /api/v1/runs/<run>/events`` is paged
   (``after``/``next_after``, limit 1000) until every one is listed: events/s from the
   first emit to the last one listed. Baselines on the throwaway topic, same messages:
   raw produce (all sent, then one flush: what batching gives) and produce waiting for
   each acknowledgement with the same threads (the emitter's pattern, no service behind).

Each figure is the median of ``--repeat`` runs (baseline and platform interleaved).
Prints, never asserts. At the end the topic, the benchmark's runs (PostgreSQL rows;
the events stay in Kafka's ``platform-events`` until its retention) and the user are
removed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from skiff import events, keycloak
from skiff.events.transport import SEND_TIMEOUT_S
from skiff.native.context import Context
from skiff.services import kafka as kafka_service
from skiff.services import notifications

WAIT_S = 60.0


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks event_delivery")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase; medians are printed")
    parser.add_argument("--events", type=int, default=500, help="events of the latency run")
    parser.add_argument("--rate", type=float, default=50, help="events/s of the latency run")
    parser.add_argument("--burst", type=int, default=2000, help="events of the throughput run")
    parser.add_argument("--threads", type=int, default=1, help="threads emitting the burst")
    return parser.parse_known_args(sys.argv[1:])[0]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99), "max": max(values)}


def index_of(text: str, tag: str) -> int | None:
    """``"<tag> <i>"`` -> i; None for another run's or benchmark's text."""
    head, _, number = text.rpartition(" ")
    return int(number) if head == tag and number.isdigit() else None


def paced(n: int, rate: float, send: Callable[[int], None]) -> tuple[dict[int, float], list[float]]:
    """Call send(i) for i < n at ``rate``/s; returns each call's start and duration (ms)."""
    started: dict[int, float] = {}
    took: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        started[i] = time.perf_counter()
        send(i)
        took.append((time.perf_counter() - started[i]) * 1000)
    return started, took


def wait_all(arrived: dict[int, float], n: int, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while len(arrived) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def latencies(started: dict[int, float], arrived: dict[int, float]) -> list[float]:
    return [(arrived[i] - started[i]) * 1000 for i in started if i in arrived]


# -- the platform ----------------------------------------------------------------------


class Stream:
    """An SSE stream read in a thread; ``arrived[i]`` = when event ``"<tag> <i>"`` came in."""

    def __init__(self, url: str, token: str, tag: str) -> None:
        self.tag = tag
        self.arrived: dict[int, float] = {}
        self.status = 0
        self.error: BaseException | None = None
        self.opened = threading.Event()
        self.stop = False
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, args=(url, token), daemon=True)
        self._thread.start()
        if not self.opened.wait(30):
            raise TimeoutError(f"stream {url} did not open")
        if self.error is not None or self.status != 200:
            raise RuntimeError(f"stream {url}: {self.status or ''} {self.error or ''}")

    def _read(self, url: str, token: str) -> None:
        try:
            with httpx.stream("GET", url, timeout=httpx.Timeout(30, read=60),
                              headers={"Authorization": f"Bearer {token}"}) as r:
                self.status = r.status_code
                self._response = r
                for line in r.iter_lines():
                    now = time.perf_counter()
                    if line.startswith("retry:"):
                        # The first line: the server has subscribed to the live events.
                        self.opened.set()
                    elif line.startswith("data: "):
                        data = json.loads(line[6:]).get("data") or {}
                        i = index_of(str(data.get("text", "")), self.tag)
                        if i is not None:
                            self.arrived.setdefault(i, now)
                if r.status_code != 200:
                    self.opened.set()
        except (httpx.HTTPError, httpx.StreamError) as exc:
            if not self.stop:
                self.error = exc
        finally:
            self.opened.set()

    def close(self) -> None:
        self.stop = True
        if self._response is not None:
            self._response.close()
        self._thread.join(10)


def run_url(base: str, run: str, what: str) -> str:
    return f"{base}/api/v1/runs/{quote(run, safe='/')}/{what}"


def platform_latency(base: str, token: str, user: str, n: int, rate: float,
                     runs: list[str]) -> dict[str, Any]:
    run = f"local/{user}/bench-{uuid.uuid4().hex}"
    runs.append(run)
    tag = f"latency-{uuid.uuid4().hex[:8]}"

    def emit(i: int) -> None:
        events.log(f"{tag} {i}", run=run, user=user)

    stream = Stream(f"{run_url(base, run, 'stream')}?after=0", token, tag)
    try:
        started, took = paced(n, rate, emit)
        wait_all(stream.arrived, n)
    finally:
        stream.close()
    return {"latency": latencies(started, stream.arrived), "emit": took,
            "lost": n - len(stream.arrived)}


def listed(client: httpx.Client, base: str, run: str, tag: str, m: int,
           timeout: float = 300) -> tuple[float, int, int]:
    """Page the run's events until m of this tag are listed: (when, listed, duplicates)."""
    seen: set[int] = set()
    duplicates = 0
    after = 0
    deadline = time.monotonic() + timeout
    while len(seen) < m and time.monotonic() < deadline:
        answer = client.get(run_url(base, run, "events"), params={"after": after, "limit": 1000})
        if answer.status_code == 404:  # no event of the run stored yet
            time.sleep(0.02)
            continue
        answer.raise_for_status()
        page = answer.json()
        for event in page["events"]:
            after = max(after, int(event["seq"]))
            i = index_of(str((event.get("data") or {}).get("text", "")), tag)
            if i is None:
                continue
            if i in seen:
                duplicates += 1
            seen.add(i)
        if page["next_after"] is None and len(seen) < m:
            time.sleep(0.02)
    return time.perf_counter(), len(seen), duplicates


def platform_throughput(base: str, token: str, user: str, m: int, threads: int,
                        runs: list[str]) -> dict[str, float]:
    run = f"local/{user}/bench-{uuid.uuid4().hex}"
    runs.append(run)
    tag = f"burst-{uuid.uuid4().hex[:8]}"

    def emit(i: int) -> None:
        events.log(f"{tag} {i}", run=run, user=user)

    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        t0 = time.perf_counter()
        if threads <= 1:
            for i in range(m):
                emit(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(emit, range(m)))
        t_emitted = time.perf_counter()
        t_listed, count, duplicates = listed(client, base, run, tag, m)
    return {"emit": m / (t_emitted - t0), "stored": count / (t_listed - t0),
            "drain_ms": (t_listed - t_emitted) * 1000, "listed": count, "duplicates": duplicates}


# -- the baseline: plain Kafka ---------------------------------------------------------


def producer(bootstrap: str) -> KafkaProducer:
    """The emitter's producer settings (skiff.events.transport)."""
    return KafkaProducer(bootstrap_servers=bootstrap, client_id="events-bench", acks="all", retries=5,
                         max_block_ms=int(SEND_TIMEOUT_S * 1000),
                         key_serializer=lambda k: k.encode(),
                         value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode())


def event_like(run: str, user: str, text: str) -> dict[str, Any]:
    """A log event as skiff.events sends it (same fields, same size)."""
    return {"id": uuid.uuid4().hex, "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "kind": "log", "run": run, "step": "", "user": user, "workflow": "", "title": "",
            "link": None, "data": {"text": text}}


class TopicReader:
    """A plain consumer (the service's settings, no group) reading the topic from its end."""

    def __init__(self, bootstrap: str, topic: str, tag: str) -> None:
        self.tag = tag
        self.arrived: dict[int, float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       max_poll_records=500)
        deadline = time.monotonic() + 30
        while not (found := self._consumer.partitions_for_topic(topic)) and time.monotonic() < deadline:
            time.sleep(0.2)  # a topic just created: its metadata may not be there yet
        parts = [TopicPartition(topic, p) for p in found or ()]
        self._consumer.assign(parts)
        self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end offsets now, not at the first poll
            self._consumer.position(tp)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            batches = self._consumer.poll(timeout_ms=1000)
            self.ready.set()
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    i = index_of(str(json.loads(r.value)["data"]["text"]), self.tag)
                    if i is not None:
                        self.arrived.setdefault(i, now)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)
        self._consumer.close()


def kafka_latency(bootstrap: str, topic: str, user: str, n: int, rate: float) -> dict[str, Any]:
    run = f"local/{user}/bench-{uuid.uuid4().hex}"
    tag = f"latency-{uuid.uuid4().hex[:8]}"
    reader = TopicReader(bootstrap, topic, tag)
    sender = producer(bootstrap)
    try:
        sender.send(topic, key=run, value=event_like(run, user, "warm-up")).get(timeout=SEND_TIMEOUT_S)
        reader.ready.wait(30)

        def send(i: int) -> None:
            sender.send(topic, key=run, value=event_like(run, user, f"{tag} {i}")).get(
                timeout=SEND_TIMEOUT_S)

        started, took = paced(n, rate, send)
        wait_all(reader.arrived, n)
    finally:
        sender.close()
        reader.close()
    return {"latency": latencies(started, reader.arrived), "emit": took, "lost": n - len(reader.arrived)}


def kafka_throughput(bootstrap: str, topic: str, user: str, m: int, threads: int) -> dict[str, float]:
    run = f"local/{user}/bench-{uuid.uuid4().hex}"
    sender = producer(bootstrap)
    try:
        sender.send(topic, key=run, value=event_like(run, user, "warm-up")).get(timeout=SEND_TIMEOUT_S)
        messages = [event_like(run, user, f"burst {i}") for i in range(m)]
        t0 = time.perf_counter()
        for message in messages:
            sender.send(topic, key=run, value=message)
        sender.flush()
        raw = m / (time.perf_counter() - t0)
        messages = [event_like(run, user, f"burst {i}") for i in range(m)]

        def send(message: dict[str, Any]) -> None:
            sender.send(topic, key=run, value=message).get(timeout=SEND_TIMEOUT_S)

        t0 = time.perf_counter()
        if threads <= 1:
            for message in messages:
                send(message)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(send, messages))
        acked = m / (time.perf_counter() - t0)
    finally:
        sender.close()
    return {"raw": raw, "acked": acked}


# -- setup, cleanup, report ------------------------------------------------------------


def delete_runs(ctx: Context, runs: list[str]) -> None:
    """The benchmark's runs and (cascade) their events, from the service's database."""
    if not runs:
        return
    from sqlalchemy import create_engine, text

    db = create_engine(notifications.database_url(ctx.settings))
    try:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM runs WHERE run = ANY(:runs)"), {"runs": runs})
    finally:
        db.dispose()


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def med_pcts(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    per_run = [summary(r[key]) for r in runs]
    return {q: statistics.median(s[q] for s in per_run) for q in ("p50", "p95", "p99", "max")}


def line(label: str, figures: dict[str, float]) -> str:
    return f"  {label:<36}" + "  ".join(f"{q} {v:7.1f}" for q, v in figures.items()) + "  ms"


def main() -> None:
    opts = options()
    ctx = Context.discover()
    settings = ctx.settings
    base = notifications.internal_url(settings)
    bootstrap = kafka_service.bootstrap_servers(ctx)
    topic = f"events-bench-{uuid.uuid4().hex[:8]}"
    try:
        health = httpx.get(f"{base}/healthz", timeout=10)
        health.raise_for_status()
        kafka_service.create_topics(bootstrap, [topic])
    except Exception as exc:  # whatever is down, the answer is the same
        print(f"event_delivery: skipped, needs the running stack (`skiff up`): notifications at {base}, "
              f"Kafka at {bootstrap}: {type(exc).__name__}: {exc}")
        return
    print(f"event_delivery: {opts.repeat} run(s) of {opts.events} events at {opts.rate:g}/s and a burst of "
          f"{opts.burst} ({opts.threads} thread(s)); service {health.json()}; load average now "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    admin = keycloak.admin_client(settings)
    user = f"bench-ev-{uuid.uuid4().hex[:8]}"
    password = keycloak.create_user(settings, user, "data-scientist", None, admin=admin)
    runs: list[str] = []
    lat: list[dict[str, Any]] = []
    base_lat: list[dict[str, Any]] = []
    thr: list[dict[str, float]] = []
    base_thr: list[dict[str, float]] = []
    try:
        # Untimed: the emitter's producer connected, the service's first query for the user done.
        warm = f"local/{user}/bench-{uuid.uuid4().hex}"
        runs.append(warm)
        events.log("warm-up", run=warm, user=user)
        for i in range(opts.repeat):
            token = keycloak.user_token(settings, user, password)  # 5 minutes each
            base_lat.append(kafka_latency(bootstrap, topic, user, opts.events, opts.rate))
            lat.append(platform_latency(base, token, user, opts.events, opts.rate, runs))
            base_thr.append(kafka_throughput(bootstrap, topic, user, opts.burst, opts.threads))
            thr.append(platform_throughput(base, token, user, opts.burst, opts.threads, runs))
            print(f"  run {i + 1}/{opts.repeat}: emit->SSE p50 {summary(lat[-1]['latency'])['p50']:.1f} ms "
                  f"(kafka {summary(base_lat[-1]['latency'])['p50']:.1f}), burst stored "
                  f"{thr[-1]['stored']:.0f} events/s (kafka acked {base_thr[-1]['acked']:.0f})", flush=True)
    finally:
        try:
            with kafka_service.admin(bootstrap, timeout_ms=15000) as client:
                client.delete_topics([topic])
        except Exception as exc:
            print(f"  (could not delete topic {topic}: {exc})")
        try:
            delete_runs(ctx, runs)
        except Exception as exc:
            print(f"  (could not delete the runs {runs}: {exc})")
        found = keycloak.find_user(admin, user)
        if found is not None:
            admin.delete_user(found["id"])

    ours, theirs = med_pcts(lat, "latency"), med_pcts(base_lat, "latency")
    print(f"event_delivery: emit -> SSE line in the browser's place ({opts.events} log events at "
          f"{opts.rate:g}/s, one stream; medians of {opts.repeat} run(s))")
    print(line("platform: emit() -> SSE data line", ours))
    print(line("  of which emit() (Kafka ack)", med_pcts(lat, "emit")))
    print(line("baseline: send -> consumer poll", theirs))
    print(line("  of which send().get() (ack)", med_pcts(base_lat, "emit")))
    print("  platform / baseline:                " + "  ".join(
        f"{q} {ours[q] / theirs[q]:7.1f}" if theirs[q] > 0 else f"{q}       -" for q in ours) + "  x")
    print(f"  not delivered: platform {sum(r['lost'] for r in lat)}, "
          f"baseline {sum(r['lost'] for r in base_lat)} (of {opts.events * opts.repeat})")
    print(f"event_delivery: burst of {opts.burst} events, {opts.threads} emitting thread(s)")
    print(f"  platform: emit() calls            {med(thr, 'emit'):8.0f} events/s")
    print(f"  platform: first emit -> all listed {med(thr, 'stored'):7.0f} events/s  "
          f"[last emit returned -> all listed {med(thr, 'drain_ms'):.0f} ms]")
    print(f"  listed / duplicates:              {sum(r['listed'] for r in thr):8.0f} / "
          f"{sum(r['duplicates'] for r in thr):.0f} of {opts.burst * opts.repeat}")
    print(f"  baseline: raw produce (one flush) {med(base_thr, 'raw'):8.0f} events/s  "
          f"platform/raw {med(thr, 'stored') / med(base_thr, 'raw'):.2f}")
    print(f"  baseline: produce, wait each ack  {med(base_thr, 'acked'):8.0f} events/s  "
          f"platform/acked {med(thr, 'stored') / med(base_thr, 'acked'):.2f}")


if __name__ == "__main__":
    main()
