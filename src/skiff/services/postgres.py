"""PostgreSQL: the metadata database of Airflow, MLflow and Keycloak.

Natively it is Debian's ``postgresql-$POSTGRES_VERSION`` run from a data folder of
our own (never the system cluster). PostgreSQL refuses to run as root, so when
we are root the server runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service

# Role and database per client; the password setting is named <role>_db_password.
DATABASES = ("mlflow", "airflow", "keycloak", "catalog", "notifications")


def bin_dir(ctx: Context) -> Path:
    return Path(f"/usr/lib/postgresql/{ctx.versions.postgres_version}/bin")


def _run_as() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def data_dir(ctx: Context) -> Path:
    """The cluster's folder: in the state folder when the server's user can reach it.

    A checkout under /root is not traversable by ``postgres``; then the cluster
    lives under /var/lib/skiff, keyed by the state folder so checkouts don't share it.
    """
    preferred = ctx.data_dir("postgres")
    user = _run_as()
    if user is None or _reachable_by(user, preferred):
        return preferred / "cluster"
    key = hashlib.sha256(str(ctx.state.resolve()).encode()).hexdigest()[:10]
    return Path("/var/lib/skiff") / key / "postgres"


def _reachable_by(user: str, path: Path) -> bool:
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], check=False)
    return probe.returncode == 0


def install(ctx: Context) -> None:
    if not (bin_dir(ctx) / "postgres").exists():
        raise RuntimeError(
            f"postgres: {bin_dir(ctx)}/postgres not found; install Debian's "
            f"postgresql-{ctx.versions.postgres_version} (apt-get install "
            f"postgresql-{ctx.versions.postgres_version}, as `skiff install` does as root)"
        )


# initdb lets password logins in from loopback only; a server bound to every interface
# (a container) takes them from the other containers too.
NETWORK_HBA = "host all all all scram-sha-256"


def prepare(ctx: Context) -> None:
    """Create the cluster once, with the superuser password from .env."""
    install(ctx)
    cluster = data_dir(ctx)
    if not (cluster / "PG_VERSION").exists():
        _initdb(ctx, cluster)
    hba = cluster / "pg_hba.conf"
    if ctx.settings.bind_host in ("0.0.0.0", "::", "*") and NETWORK_HBA not in hba.read_text():
        with hba.open("a") as out:
            out.write(f"# skiff: listening on {ctx.settings.bind_host}\n{NETWORK_HBA}\n")


def _initdb(ctx: Context, cluster: Path) -> None:
    cluster.mkdir(parents=True, exist_ok=True)
    user = _run_as()
    with tempfile.NamedTemporaryFile("w", delete=False, dir=cluster.parent) as pw:
        pw.write(ctx.settings.postgres_password.get_secret_value())
    try:
        if user:
            shutil.chown(cluster, user, user)
            shutil.chown(pw.name, user, user)
        cmd = [str(bin_dir(ctx) / "initdb"), "-D", str(cluster), "-U", "postgres",
               f"--pwfile={pw.name}", "--auth-host=scram-sha-256", "--auth-local=peer",
               "-E", "UTF8", "--locale=C.UTF-8"]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"postgres: initdb failed: {done.stderr.strip()[-500:]}")
    finally:
        os.unlink(pw.name)


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    return [Program(
        name="postgres",
        command=[str(bin_dir(ctx) / "postgres"), "-D", str(data_dir(ctx)),
                 "-c", f"listen_addresses={s.bind_host}", "-c", f"port={s.postgres_port}",
                 "-c", f"unix_socket_directories={tempfile.gettempdir()}",
                 "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
        user=_run_as(),
    )]


def connect(ctx: Context, dbname: str = "postgres") -> psycopg.Connection:
    s = ctx.settings
    return psycopg.connect(host=s.host("postgres"), port=s.postgres_port, user="postgres",
                           password=s.postgres_password.get_secret_value(), dbname=dbname,
                           connect_timeout=3, autocommit=True)


def ready(ctx: Context) -> None:
    try:
        with connect(ctx) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        raise NotReady(str(exc).strip().splitlines()[0]) from exc


def ensure_databases(conn: psycopg.Connection, passwords: dict[str, str]) -> list[str]:
    """Create each role and its database if missing; keep passwords in step with .env.

    Used by native bootstrap and by Compose's ``postgres-init`` job alike.
    """
    created = []
    for name, password in passwords.items():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(name)))
            created.append(name)
    return created


def db_passwords(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    return {name: getattr(s, f"{name}_db_password").get_secret_value() for name in DATABASES}


def bootstrap(ctx: Context) -> None:
    with connect(ctx) as conn:
        ensure_databases(conn, db_passwords(ctx))


def url(ctx: Context) -> str:
    return f"postgresql://{ctx.settings.bind_host}:{ctx.settings.postgres_port}"


SERVICE = Service(
    name="postgres",
    packages=("postgresql-{postgres_version}",),
    description="PostgreSQL: metadata of Airflow, MLflow and Keycloak",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.postgres_port],
    install=install,
    prepare=prepare,
    bootstrap=bootstrap,
    start_timeout=60,
)
