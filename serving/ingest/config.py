"""Where Kafka and Cassandra are, from skiff's settings (``.env`` and the environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from skiff.cassandra_access import INGEST, Login, login

# The streaming consumer's group, and the scheduled mode's: each has its own offsets.
GROUP = "skiff-ingest"
BATCH_GROUP = "skiff-ingest-batch"


@dataclass(frozen=True)
class Endpoints:
    kafka: str            # bootstrap servers, host:port
    cassandra_host: str
    cassandra_port: int
    cassandra_login: Login  # role skiff_ingest: reads and writes the captured rows


def endpoints() -> Endpoints:
    """From skiff.settings.Settings, as the services modules compute them.

    Natively (and in the CLI venv) that is the checkout's ``.env``. Where no checkout
    or no complete ``.env`` is found (an image with only some variables set, e.g.
    Airflow's), the same variable names are read from the environment, with the
    Settings defaults: the ingest needs hosts and ports, not the platform's secrets.
    """
    from skiff.settings import Settings, find_root

    try:
        s = Settings.load(find_root())
    except (FileNotFoundError, RuntimeError):
        return _from_environment(Settings)
    return Endpoints(kafka=f"{s.host('kafka')}:{s.kafka_port}", cassandra_login=login(s, INGEST),
                     cassandra_host=s.host("cassandra"), cassandra_port=s.cassandra_port)


def _from_environment(settings: type) -> Endpoints:
    fields = settings.model_fields  # type: ignore[attr-defined]

    def get(name: str) -> str:
        return os.environ.get(name.upper()) or str(fields[name].default)

    bind = get("bind_host")
    kafka_host = os.environ.get("KAFKA_HOST") or bind
    cassandra_host = os.environ.get("CASSANDRA_HOST") or bind
    return Endpoints(kafka=f"{kafka_host}:{get('kafka_port')}", cassandra_host=cassandra_host,
                     cassandra_port=int(get("cassandra_port")),
                     cassandra_login=Login(INGEST, os.environ.get("CASSANDRA_INGEST_PASSWORD", "")))
