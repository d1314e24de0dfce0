"""Notifications: platform events (skiff.events) stored and pushed live (serving/notifications).

A Starlette app under uvicorn from the serving venv, one process: a thread consumes
the Kafka topic ``events_topic`` (group skiff-notifications) into PostgreSQL's
``notifications`` database (role and database made by postgres' bootstrap, schema
migrated by Alembic at start), and the event loop serves the API and the live
streams (SSE), fanned out through PostgreSQL LISTEN/NOTIFY (ADR 0017). Every
endpoint but /healthz and /metrics takes a Keycloak token; Traefik publishes the API
at ``/events`` (forward-auth ``auth-bearer`` turns a portal session into a token).
Linked content (images, files, big payloads) is read from bucket ``events_bucket``.
"""

from __future__ import annotations

from urllib.parse import quote

from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.services import catalog, kafka, keycloak, model_server, s3
from skiff.settings import Settings

NAME = "notifications"
GROUP = "skiff-notifications"  # serving.notifications.config.GROUP


def install(ctx: Context) -> None:
    # The serving venv (Starlette, uvicorn, psycopg, kafka-python) and the checkout.
    model_server.install(ctx)


def internal_url(settings: Settings) -> str:
    """Where platform code (the portal, tests) reaches the API directly."""
    return f"http://{settings.host('notifications')}:{settings.notifications_port}"


def url(ctx: Context) -> str:
    return internal_url(ctx.settings)


def database_url(settings: Settings) -> str:
    password = quote(settings.notifications_db_password.get_secret_value(), safe="")
    return (f"postgresql+psycopg://notifications:{password}@{settings.host('postgres')}:"
            f"{settings.postgres_port}/notifications")


def env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    return {
        "NOTIFICATIONS_DATABASE_URL": database_url(s),
        "KAFKA_BOOTSTRAP": kafka.bootstrap_servers(ctx),
        "EVENTS_TOPIC": s.events_topic,
        "EVENTS_BUCKET": s.events_bucket,
        # Keycloak tokens: the public issuer, keys fetched at the internal address.
        "AUTH_ISSUER": s.keycloak_issuer,
        "AUTH_JWKS_URL": keycloak.jwks_url(ctx),
        # Who may see a workflow's runs: the catalog, asked with the caller's token.
        "CATALOG_URL": catalog.internal_url(s),
        **s3.client_env(s),
        "PYTHONUNBUFFERED": "1",
    }


def programs(ctx: Context) -> list[Program]:
    return [Program(
        name=NAME,
        command=[str(ctx.venv("serving") / "bin" / "uvicorn"), "--factory",
                 "serving.notifications.app:create_app",
                 "--host", ctx.settings.bind_host, "--port", str(ctx.settings.notifications_port),
                 # One process: it holds every stream on its event loop (ADR 0017).
                 "--workers", "1", "--no-access-log", "--timeout-graceful-shutdown", "10"],
        env=env(ctx),
        directory=ctx.root,
        stop_wait=20,
    )]


def ready(ctx: Context) -> None:
    http_ok(f"{url(ctx)}/healthz")


SERVICE = Service(
    name=NAME,
    description=f"Notifications: platform events from Kafka (group {GROUP}), stored and "
                "streamed to the console (REST + SSE)",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.notifications_port],
    depends_on=("postgres", "kafka", "s3", "keycloak", "catalog"),
    install=install,
    start_timeout=90,
)
