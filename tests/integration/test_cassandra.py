"""Cassandra: the schema bootstrap applied, and a captured event written and read back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from skiff import cassandra_access
from skiff.native.context import Context
from skiff.services import cassandra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def session(stack: Context):  # type: ignore[no-untyped-def]
    cluster = cassandra.connect(stack, cassandra_access.INGEST, timeout=30)
    sess = cluster.connect(cassandra.SCHEMA_KEYSPACE)
    yield sess
    cluster.shutdown()


def test_schema_has_the_capture_tables(session) -> None:  # type: ignore[no-untyped-def]
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
        (cassandra.SCHEMA_KEYSPACE,))
    assert {"prediction_events", "prediction_labels"} <= {r.table_name for r in rows}


def test_the_applied_schema_versions_are_recorded(session) -> None:  # type: ignore[no-untyped-def]
    rows = session.execute("SELECT version FROM schema_version WHERE keyspace_name = %s",
                           (cassandra.SCHEMA_KEYSPACE,))
    assert [r.version for r in rows] == [2, 1]  # newest first
    columns = session.execute(
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
        (cassandra.SCHEMA_KEYSPACE, "prediction_labels"))
    assert {"label", "label_time"} <= {c.column_name for c in columns}


def test_written_event_is_read_back_by_its_key(session) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC).replace(microsecond=0)
    request_id = uuid.uuid4()
    features = {"age": 63.0, "sex": "Male", "cp": "typical angina"}
    session.execute(
        "INSERT INTO prediction_events (model_name, day, event_time, request_id, model_version,"
        " features, prediction, probability) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        ("heart-test", now.strftime("%Y-%m-%d"), now, request_id, "7", json.dumps(features), 1.0, 0.83))
    row = session.execute(
        "SELECT model_version, features, prediction, probability FROM prediction_events"
        " WHERE model_name = %s AND day = %s AND event_time = %s AND request_id = %s",
        ("heart-test", now.strftime("%Y-%m-%d"), now, request_id)).one()
    assert row is not None
    assert (row.model_version, json.loads(row.features), row.prediction, row.probability) == (
        "7", features, 1.0, 0.83)


def test_applying_the_schema_again_keeps_existing_rows(stack: Context, session) -> None:  # type: ignore[no-untyped-def]
    request_id = uuid.uuid4()
    session.execute("INSERT INTO prediction_labels (request_id, model_name) VALUES (%s, %s)",
                    (request_id, "heart-test"))
    s = stack.settings
    cql = cassandra.schema_file(stack).read_text()
    admin = cassandra_access.login(s, cassandra_access.ADMIN)
    assert cassandra.apply_schema(s.host("cassandra"), s.cassandra_port, cql, admin) == 7
    row = session.execute("SELECT model_name FROM prediction_labels WHERE request_id = %s",
                          (request_id,)).one()
    assert row is not None and row.model_name == "heart-test"
