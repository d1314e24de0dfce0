"""The catalog: projects, assets with access levels, data sources, lineage (serving/catalog).

A Flask app under gunicorn from the serving venv; its state in PostgreSQL's
``catalog`` database (role and database made by postgres' bootstrap), its schema
brought up to date by Alembic when gunicorn starts (serving/catalog/migrate.py).
Every endpoint but ``/healthz`` takes a Keycloak token, so it depends on
Keycloak and PostgreSQL. Traefik publishes it at ``/catalog``.
"""

from __future__ import annotations

from urllib.parse import quote

from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.services import gunicorn, keycloak, model_server, s3
from skiff.settings import Settings

NAME = "catalog"
WORKERS = 2
THREADS = 4


def install(ctx: Context) -> None:
    # The serving venv and the editable checkout, shared with the model server.
    model_server.install(ctx)


def internal_url(settings: Settings) -> str:
    """Where platform code (CLI, Airflow tasks, the portal) reaches the catalog's API."""
    return f"http://{settings.host('catalog')}:{settings.catalog_port}"


def url(ctx: Context) -> str:
    return internal_url(ctx.settings)


def database_url(settings: Settings) -> str:
    password = quote(settings.catalog_db_password.get_secret_value(), safe="")
    return (f"postgresql+psycopg://catalog:{password}@{settings.host('postgres')}:"
            f"{settings.postgres_port}/catalog")


def env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    return {
        "CATALOG_DATABASE_URL": database_url(s),
        "CATALOG_SECRET_KEY": s.catalog_secret_key.get_secret_value(),
        # Keycloak tokens: the public issuer, keys fetched at the internal address.
        "AUTH_ISSUER": s.keycloak_issuer,
        "AUTH_JWKS_URL": keycloak.jwks_url(ctx),
        # The S3 root account: users' and teams' stores are made by the catalog (stores.py).
        **s3.client_env(s),
    }


def programs(ctx: Context) -> list[Program]:
    return [gunicorn.program(ctx, NAME, app="serving.catalog.app:create_app()",
                             port=ctx.settings.catalog_port, workers=WORKERS, threads=THREADS,
                             env=env(ctx), config="serving.catalog.gunicorn_conf")]


def ready(ctx: Context) -> None:
    http_ok(f"{url(ctx)}/healthz")


def bootstrap(ctx: Context) -> None:
    # The platform's own DAGs become public workflows, so the run-start check finds them.
    from skiff.catalog import workflows

    workflows.bootstrap(ctx.settings, url(ctx))


SERVICE = Service(
    name=NAME,
    description="Catalog: projects, assets, access levels, data sources, lineage (REST API)",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.catalog_port],
    depends_on=("postgres", "keycloak"),
    install=install,
    bootstrap=bootstrap,
    start_timeout=90,
)
