"""``skiff init``: write ``.env`` from ``.env.example`` with fresh secrets.

Compose interpolates only from ``.env``, so the versions from ``versions.env`` are
appended below a marker and refreshed on every ``init``; secrets already in
``.env`` are kept, so re-running ``init`` never locks anyone out of their data.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path

from skiff.files import PRIVATE, write_atomically

VERSIONS_MARKER = "# --- Versions: copied from versions.env by `skiff init`; edit versions.env ---"


def _token() -> str:
    return secrets.token_urlsafe(24)


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _kafka_cluster_id() -> str:
    # Kafka wants the 16 bytes of a UUID in URL-safe base64 without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _access_key() -> str:
    return "skiff" + secrets.token_hex(8)


GENERATORS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _token,
    "MLFLOW_DB_PASSWORD": _token,
    "AIRFLOW_DB_PASSWORD": _token,
    "S3_ACCESS_KEY": _access_key,
    "S3_SECRET_KEY": _token,
    "TRAINING_TRIGGER_PASSWORD": _token,
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(64),  # PyJWT wants 64+ bytes for HS512
    "AIRFLOW_API_SECRET_KEY": _token,
    "AIRFLOW_FERNET_KEY": _fernet_key,
    "KAFKA_CLUSTER_ID": _kafka_cluster_id,
    "KEYCLOAK_ADMIN_PASSWORD": _token,
    "KEYCLOAK_DB_PASSWORD": _token,
    "PLATFORM_ADMIN_PASSWORD": _token,
    "PORTAL_CLIENT_SECRET": _token,
    "JUPYTERHUB_CLIENT_SECRET": _token,
    "AIRFLOW_CLIENT_SECRET": _token,
    "MLFLOW_CLIENT_SECRET": _token,
    "DEVICE_CLIENT_SECRET": _token,
    "PORTAL_COOKIE_SECRET": lambda: secrets.token_urlsafe(32),
    "JUPYTERHUB_CRYPT_KEY": lambda: secrets.token_hex(32),
    "CONFIGPROXY_AUTH_TOKEN": _token,
    "REDIS_PASSWORD": _token,
    "SPARK_CONNECT_TOKEN": _token,
    "IGNITE_PASSWORD": _token,
    "CASSANDRA_ADMIN_PASSWORD": _token,
    "CASSANDRA_INGEST_PASSWORD": _token,
    "CASSANDRA_READER_PASSWORD": _token,
    "CATALOG_DB_PASSWORD": _token,
    "CATALOG_SECRET_KEY": _fernet_key,
    "NOTIFICATIONS_DB_PASSWORD": _token,
}


def parse(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file; comments and blank lines ignored."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def render(example: str, versions: str, existing: dict[str, str]) -> str:
    """The new ``.env``: the example's lines with secrets filled, then the versions."""
    out: list[str] = []
    for raw in example.splitlines():
        key, sep, value = raw.partition("=")
        key = key.strip()
        if sep and not raw.lstrip().startswith("#"):
            if existing.get(key):
                value = existing[key]
            elif key in GENERATORS:
                value = GENERATORS[key]()
            out.append(f"{key}={value}")
        else:
            out.append(raw)
    out += ["", VERSIONS_MARKER]
    out += [f"{k}={v}" for k, v in parse(versions).items()]
    return "\n".join(out) + "\n"


def write_env(root: Path) -> tuple[Path, list[str]]:
    """Write ``root/.env``; return its path and the secrets generated this time."""
    target = root / ".env"
    existing = parse(target.read_text()) if target.exists() else {}
    text = render(
        (root / ".env.example").read_text(), (root / "versions.env").read_text(), existing
    )
    generated = [k for k in GENERATORS if not existing.get(k)]
    write_atomically(target, text, PRIVATE)
    return target, generated
