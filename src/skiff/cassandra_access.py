"""Who may do what in Cassandra, and the one way the platform connects to it.

Cassandra checks passwords (PasswordAuthenticator) and grants (CassandraAuthorizer).
Three roles, each with its password in .env:

- ``skiff_admin``: superuser, used by ``skiff bootstrap cassandra`` only (schema,
  roles, grants). A new node's default superuser ``cassandra`` is disabled then.
- ``skiff_ingest``: reads and writes the ``skiff`` keyspace's rows (the ingest
  daemon and the capture DAG join labels to predictions).
- ``skiff_reader``: reads them (training, monitoring, the demo's checks).

A program gets its role as CASSANDRA_USERNAME/CASSANDRA_PASSWORD in its
environment (skiff.services.ingest, skiff.services.airflow); user code gets none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy

KEYSPACE = "skiff"
ADMIN, INGEST, READER = "skiff_admin", "skiff_ingest", "skiff_reader"
# What each role may do on the keyspace (CQL permissions).
GRANTS: dict[str, tuple[str, ...]] = {INGEST: ("SELECT", "MODIFY"), READER: ("SELECT",)}
# A new node's superuser, until the bootstrap disables it.
DEFAULT_SUPERUSER = ("cassandra", "cassandra")


@dataclass(frozen=True)
class Login:
    username: str
    password: str

    def env(self) -> dict[str, str]:
        return {"CASSANDRA_USERNAME": self.username, "CASSANDRA_PASSWORD": self.password}


def login(settings: Any, role: str) -> Login:
    """The platform's credentials of ``role`` (ADMIN, INGEST or READER) from its settings."""
    field = {ADMIN: "cassandra_admin_password", INGEST: "cassandra_ingest_password",
             READER: "cassandra_reader_password"}[role]
    return Login(role, getattr(settings, field).get_secret_value())


def connect(host: str, port: int, who: Login | None, timeout: float = 10.0,
            consistency: int | None = None) -> Cluster:
    """A cluster handle for one node as ``who`` (None: no credentials); the caller shuts it down."""
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout,
                               **({"consistency_level": consistency} if consistency is not None else {}))
    auth = PlainTextAuthProvider(who.username, who.password) if who is not None else None
    return Cluster([host], port=port, connect_timeout=timeout, control_connection_timeout=timeout,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5,
                   auth_provider=auth)


def from_env(environ: Mapping[str, str] = os.environ, timeout: float = 10.0,
             consistency: int | None = ConsistencyLevel.LOCAL_QUORUM) -> Cluster:
    """Connect as the process's role: CASSANDRA_HOST/PORT/USERNAME/PASSWORD."""
    missing = [k for k in ("CASSANDRA_USERNAME", "CASSANDRA_PASSWORD") if not environ.get(k)]
    if missing:
        raise RuntimeError(f"no Cassandra credentials: {', '.join(missing)} not set (the platform "
                           "gives its programs a role; see skiff.cassandra_access)")
    return connect(environ.get("CASSANDRA_HOST", "127.0.0.1"), int(environ.get("CASSANDRA_PORT", "9042")),
                   Login(environ["CASSANDRA_USERNAME"], environ["CASSANDRA_PASSWORD"]), timeout,
                   consistency)


def quoted(text: str) -> str:
    """A CQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def create_role(who: Login) -> str:
    return f"CREATE ROLE IF NOT EXISTS {who.username} WITH LOGIN = true AND PASSWORD = {quoted(who.password)}"


def set_password(who: Login) -> str:
    return f"ALTER ROLE {who.username} WITH LOGIN = true AND PASSWORD = {quoted(who.password)}"


def grants(role: str) -> list[str]:
    return [f"GRANT {permission} ON KEYSPACE {KEYSPACE} TO {role}" for permission in GRANTS[role]]
