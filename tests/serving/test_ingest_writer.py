"""The writer's pure parts (rows, days, write timestamps, which labels to apply), the
consumer's bounded failure logging, the settings fallback and the native service."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections import namedtuple
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from serving.ingest import config, consumer, metrics
from serving.ingest.__main__ import OncePerWindow
from serving.ingest.writer import (
    day_of,
    event_row,
    label_row,
    label_updates,
    location_row,
    partition_batches,
    to_naive_utc,
    write_time,
)
from skiff.bracelet.events import Label, Prediction
from skiff.cassandra_access import Login
from skiff.native.context import Context
from skiff.native.spec import NotReady
from skiff.services import ingest
from skiff.settings import Settings

pytestmark = pytest.mark.unit

LookedUp = namedtuple("LookedUp", "request_id model_name day event_time label label_time")


def test_the_day_is_the_utc_date_of_the_event() -> None:
    evening_in_chicago = datetime(2026, 3, 1, 19, 30, tzinfo=timezone(timedelta(hours=-6)))
    assert day_of(evening_in_chicago) == "2026-03-02"


def test_times_are_stored_at_millisecond_precision_in_utc() -> None:
    t = datetime(2026, 3, 1, 12, 0, 0, 123987, tzinfo=timezone(timedelta(hours=2)))
    assert to_naive_utc(t) == datetime(2026, 3, 1, 10, 0, 0, 123000)
    assert write_time(t) == write_time(to_naive_utc(t)) == 1772359200123000


def test_an_event_row_and_its_location_share_the_primary_key() -> None:
    t = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    p = Prediction(uuid.uuid4(), t, "bracelet", "4", {"b": 1.0, "a": None}, 1, 0.75)
    row = event_row(p, received_at=t + timedelta(seconds=1))
    assert row[:4] == ("bracelet", "2026-03-01", to_naive_utc(t), p.request_id)
    assert location_row(p) == (p.request_id, "bracelet", "2026-03-01", to_naive_utc(t))
    assert json.loads(row[5]) == {"a": None, "b": 1.0} and row[6:8] == (1.0, 0.75)


def test_event_rows_are_batched_by_partition_and_size() -> None:
    t = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)

    def p(model: str, at: datetime) -> Prediction:
        return Prediction(uuid.uuid4(), at, model, "1", {}, 0, 0.5)

    a = [p("a", t) for _ in range(5)]
    a_next_day = [p("a", t + timedelta(seconds=2)) for _ in range(2)]
    b = [p("b", t) for _ in range(3)]
    batches = partition_batches([*a[:3], *b, *a_next_day, *a[3:]], size=2)
    assert sorted(map(len, batches)) == [1, 1, 2, 2, 2, 2]
    for batch in batches:  # one partition per batch: one mutation for Cassandra
        assert len({(x.model_name, day_of(x.time)) for x in batch}) == 1
    assert sorted(x.request_id for batch in batches for x in batch) == sorted(
        x.request_id for x in [*a, *a_next_day, *b])


def test_a_label_is_written_at_its_own_time() -> None:
    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    label = Label(uuid.uuid4(), t, 1)
    assert label_row(label) == (write_time(t), 1, to_naive_utc(t), label.request_id)


def test_labels_are_applied_only_where_both_the_row_and_the_label_are_known() -> None:
    t = datetime(2026, 3, 1, 12, 0)
    both = LookedUp(uuid.uuid4(), "m", "2026-03-01", t, 1, t + timedelta(hours=1))
    label_first = LookedUp(uuid.uuid4(), None, None, None, 0, t)
    unlabelled = LookedUp(uuid.uuid4(), "m", "2026-03-01", t, None, None)
    assert label_updates([both, label_first, unlabelled]) == [
        (write_time(both.label_time), 1, "m", "2026-03-01", t, both.request_id)]


def test_settings_come_from_the_environment_without_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    from skiff.settings import Settings

    monkeypatch.setenv("KAFKA_HOST", "kafka")
    monkeypatch.setenv("CASSANDRA_PORT", "9142")
    monkeypatch.delenv("CASSANDRA_HOST", raising=False)
    monkeypatch.delenv("BIND_HOST", raising=False)
    monkeypatch.setenv("CASSANDRA_INGEST_PASSWORD", "pw")
    assert config._from_environment(Settings) == config.Endpoints(
        "kafka:9092", "127.0.0.1", 9142, Login("skiff_ingest", "pw"))


def test_a_lasting_failure_is_logged_once_a_minute_with_growing_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    failures = consumer.Failures()
    with caplog.at_level(logging.INFO, logger="serving.ingest"):
        waits = [failures.failed("batch of 3", RuntimeError("down")) for _ in range(8)]
        failures.recovered()
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "attempt 1" in messages[0] and "RuntimeError: down" in messages[0]
    assert "recovered after 8" in messages[1]


def test_client_log_floods_are_cut_to_one_line_a_window() -> None:
    gate = OncePerWindow(("kafka",), window=60)

    def rec(name: str, at: float) -> logging.LogRecord:
        r = logging.LogRecord(name, logging.ERROR, __file__, 1, "%s: refused", ("conn",), None)
        r.created = at
        return r

    assert [gate.filter(rec("kafka.conn", t)) for t in (0, 1, 2, 30)] == [True, False, False, False]
    later = rec("kafka.conn", 61)
    assert gate.filter(later) and "3 like it" in later.getMessage()
    assert gate.filter(rec("serving.ingest", 1))


@pytest.fixture()
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    # Settings of a checkout that has none: the required ones set, the metrics on a port
    # nothing listens on unless a test serves them there.
    for name, field in Settings.model_fields.items():
        if field.is_required():
            monkeypatch.setenv(name.upper(), "x")
    monkeypatch.setenv("BIND_HOST", "127.0.0.1")
    monkeypatch.setenv("INGEST_METRICS_PORT", str(free_port()))
    return Context(root=tmp_path, cache=tmp_path / "cache", state=tmp_path / "state")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_service_runs_the_consumer_in_the_cli_venv(ctx: Context) -> None:
    (program,) = ingest.programs(ctx)
    assert program.command[:3] == [sys.executable, "-m", "serving.ingest"]
    args = program.command[3:]
    assert args[args.index("--ready-file") + 1] == str(ingest.ready_file(ctx))
    assert args[args.index("--metrics-address") + 1] == f"127.0.0.1:{ctx.settings.ingest_metrics_port}"
    assert ingest.SERVICE.ports(ctx) == [ctx.settings.ingest_metrics_port]
    assert ingest.SERVICE.depends_on == ("kafka", "cassandra") and ingest.SERVICE.install is None


def test_not_ready_until_the_consumer_wrote_its_ready_file(ctx: Context) -> None:
    with pytest.raises(NotReady, match="not in its consumer group"):
        ingest.ready(ctx)


def test_a_ready_file_of_a_dead_or_other_process_is_not_ready(ctx: Context) -> None:
    path = ingest.ready_file(ctx)
    path.write_text(json.dumps({"pid": os.getpid()}))  # alive, but not the consumer
    with pytest.raises(NotReady, match="is gone"):
        ingest.ready(ctx)
    ingest.prepare(ctx)
    assert not path.exists()


def test_ready_once_the_live_consumer_wrote_the_file_and_serves_its_metrics(ctx: Context) -> None:
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "serving.ingest"])
    try:
        ingest.ready_file(ctx).write_text(json.dumps({"pid": stand_in.pid}))
        # Its partitions, but no /metrics for Prometheus yet: not ready.
        with pytest.raises(NotReady, match="ConnectError"):
            ingest.ready(ctx)
        metrics.serve(f"127.0.0.1:{ctx.settings.ingest_metrics_port}")
        ingest.ready(ctx)
    finally:
        stand_in.kill()
        stand_in.wait()
    with pytest.raises(NotReady):
        ingest.ready(ctx)


def test_the_consumer_writes_and_removes_its_ready_file(tmp_path: Path) -> None:
    from kafka import TopicPartition

    ready = consumer.ReadyFile(tmp_path / "ready.json")
    ready.write("skiff-ingest", [TopicPartition("prediction-requests", 2)])
    doc = json.loads((tmp_path / "ready.json").read_text())
    assert doc["pid"] == os.getpid() and doc["partitions"] == ["prediction-requests-2"]
    ready.remove()
    assert not (tmp_path / "ready.json").exists()
