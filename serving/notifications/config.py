"""The notification service's settings, from the environment (skiff/services/notifications.py or Compose)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# Clients whose tokens are accepted (the token's ``azp``): the platform's front doors.
DEFAULT_CLIENTS = ("portal", "jupyterhub", "airflow", "mlflow")
# Callers that see every run: the platform's service account (client credentials of airflow).
DEFAULT_SERVICE_USERS = ("service-account-airflow",)
GROUP = "skiff-notifications"


@dataclass(frozen=True)
class Config:
    database_url: str
    issuer: str
    jwks_url: str
    kafka: str
    catalog_url: str
    topic: str = "platform-events"
    bucket: str = "events"
    s3: Mapping[str, str] = field(default_factory=dict)
    clients: tuple[str, ...] = DEFAULT_CLIENTS
    service_users: tuple[str, ...] = DEFAULT_SERVICE_USERS
    group: str = GROUP

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        needed = ("NOTIFICATIONS_DATABASE_URL", "AUTH_ISSUER", "AUTH_JWKS_URL", "KAFKA_BOOTSTRAP",
                  "CATALOG_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY")
        missing = [k for k in needed if not env.get(k)]
        if missing:
            # Failing closed: no service without its database, token check and sources.
            raise RuntimeError(f"notifications: {', '.join(missing)} not set")
        clients = tuple(c for c in env.get("AUTH_CLIENTS", "").split(",") if c) or DEFAULT_CLIENTS
        services = tuple(u for u in env.get("NOTIFICATIONS_SERVICE_USERS", "").split(",") if u) \
            or DEFAULT_SERVICE_USERS
        s3 = {k: env.get(k, "") for k in ("S3_HOST", "S3_PORT", "S3_ACCESS_KEY", "S3_SECRET_KEY",
                                           "S3_REGION")}
        return cls(database_url=env["NOTIFICATIONS_DATABASE_URL"], issuer=env["AUTH_ISSUER"],
                   jwks_url=env["AUTH_JWKS_URL"], kafka=env["KAFKA_BOOTSTRAP"],
                   catalog_url=env["CATALOG_URL"].rstrip("/"),
                   topic=env.get("EVENTS_TOPIC") or "platform-events",
                   bucket=env.get("EVENTS_BUCKET") or "events", s3=s3, clients=clients,
                   service_users=services, group=env.get("NOTIFICATIONS_GROUP") or GROUP)
