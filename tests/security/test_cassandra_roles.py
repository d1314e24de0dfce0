"""Attacks on Cassandra, which holds the patients' captured features: each refused by Cassandra.

A notebook or pipeline node reaches Cassandra's port but holds no Cassandra
login (skiff.user_env passes none); the well-known default superuser is disabled
by the bootstrap; each platform role may do what it was granted and no more
(skiff.cassandra_access). Every refusal is Cassandra's own: AuthenticationFailed
at login, Unauthorized for a statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cassandra import AuthenticationFailed, Unauthorized
from cassandra.cluster import NoHostAvailable

from skiff import cassandra_access as access
from skiff.native.context import Context
from skiff.services import cassandra

pytestmark = pytest.mark.integration

INSERT = ("INSERT INTO prediction_labels (request_id, model_name) VALUES (%s, %s)")


def login_refused(stack: Context, who: access.Login | None) -> None:
    s = stack.settings
    cluster = access.connect(s.host("cassandra"), s.cassandra_port, who, timeout=30)
    try:
        with pytest.raises(NoHostAvailable) as refused:
            cluster.connect()
    finally:
        cluster.shutdown()
    errors = list(refused.value.errors.values())
    assert errors and all(isinstance(e, AuthenticationFailed) for e in errors), errors


def as_role(stack: Context, role: str, action: Callable[..., object]) -> None:
    cluster = cassandra.connect(stack, role, timeout=30)
    try:
        action(cluster.connect(access.KEYSPACE))
    finally:
        cluster.shutdown()


def test_without_credentials_nobody_gets_in(stack: Context) -> None:
    login_refused(stack, None)


def test_the_default_superuser_is_disabled(stack: Context) -> None:
    login_refused(stack, access.Login(*access.DEFAULT_SUPERUSER))


def test_a_wrong_password_for_a_platform_role_is_refused(stack: Context) -> None:
    login_refused(stack, access.Login(access.INGEST, "guessed"))


def test_the_reader_reads_and_may_not_write(stack: Context) -> None:
    def attempt(session: object) -> None:
        session.execute("SELECT request_id FROM prediction_labels LIMIT 1")  # type: ignore[attr-defined]
        with pytest.raises(Unauthorized, match="MODIFY"):
            session.execute(INSERT, (uuid.uuid4(), "forged"))  # type: ignore[attr-defined]

    as_role(stack, access.READER, attempt)


def test_the_ingest_writes_rows_and_may_not_change_tables_or_roles(stack: Context) -> None:
    def attempt(session: object) -> None:
        session.execute(INSERT, (uuid.uuid4(), f"security-{datetime.now(UTC):%H%M%S}"))  # type: ignore[attr-defined]
        with pytest.raises(Unauthorized):
            session.execute("DROP TABLE prediction_labels")  # type: ignore[attr-defined]
        with pytest.raises(Unauthorized):
            session.execute(f"ALTER ROLE {access.READER} WITH PASSWORD = 'mine'")  # type: ignore[attr-defined]

    as_role(stack, access.INGEST, attempt)
