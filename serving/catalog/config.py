"""The catalog's settings, from the environment (set by skiff/services/catalog.py or Compose)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Clients whose tokens are accepted (the token's ``azp``): the platform's own front doors.
DEFAULT_CLIENTS = ("portal", "jupyterhub", "airflow", "mlflow")
# The platform's service caller: client credentials of client ``airflow``.
DEFAULT_SERVICE_USER = "service-account-airflow"


@dataclass(frozen=True)
class Config:
    database_url: str
    issuer: str
    jwks_url: str
    secret_key: str
    clients: tuple[str, ...] = DEFAULT_CLIENTS
    service_users: tuple[str, ...] = (DEFAULT_SERVICE_USER,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        needed = ("CATALOG_DATABASE_URL", "AUTH_ISSUER", "AUTH_JWKS_URL", "CATALOG_SECRET_KEY")
        missing = [k for k in needed if not env.get(k)]
        if missing:
            # Failing closed: no catalog without its database, its token check and its key.
            raise RuntimeError(f"catalog: {', '.join(missing)} not set")
        clients = tuple(c for c in env.get("AUTH_CLIENTS", "").split(",") if c) or DEFAULT_CLIENTS
        services = tuple(u for u in env.get("CATALOG_SERVICE_USERS", "").split(",") if u) \
            or (DEFAULT_SERVICE_USER,)
        return cls(database_url=env["CATALOG_DATABASE_URL"], issuer=env["AUTH_ISSUER"],
                   jwks_url=env["AUTH_JWKS_URL"], secret_key=env["CATALOG_SECRET_KEY"],
                   clients=clients, service_users=services)
