"""The portal: the web console and Traefik's forward-auth (serving/portal, gunicorn).

It runs from the serving venv (the model server's: Flask, gunicorn, Authlib) and
keeps its sessions in SQLite in its data folder, shared by the gunicorn
workers, with each session's Keycloak tokens encrypted under a key derived from
PORTAL_COOKIE_SECRET. It starts without Keycloak (logins fail until Keycloak
answers) and without the services its pages read (catalog, notifications, MLflow:
a page says which one is unavailable), so it depends on nothing; Traefik sends
everything no other route takes (``/``, ``/oauth2/``, the console's pages) to it.
"""

from __future__ import annotations

from pathlib import Path

from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.services import gunicorn, model_server, traefik

NAME = "portal"
WORKERS = 2
THREADS = 4


def install(ctx: Context) -> None:
    # The same venv and editable checkout as the model server.
    model_server.install(ctx)


def session_db(ctx: Context) -> Path:
    return ctx.data_dir(NAME) / "sessions.sqlite3"


def env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    return {
        "PORTAL_PUBLIC_URL": s.public_url,
        "KEYCLOAK_ISSUER": s.keycloak_issuer,
        "KEYCLOAK_INTERNAL_URL": s.keycloak_internal_url,
        "KEYCLOAK_REALM": s.keycloak_realm,
        "PORTAL_CLIENT_SECRET": s.portal_client_secret.get_secret_value(),
        "PORTAL_COOKIE_SECRET": s.portal_cookie_secret.get_secret_value(),
        "PORTAL_SESSION_DB": str(session_db(ctx)),
        # The landing page checks each service's health where Traefik reaches it.
        **traefik.upstreams(ctx),
    }


def programs(ctx: Context) -> list[Program]:
    return [gunicorn.program(ctx, NAME, app="serving.portal.app:create_app()",
                             port=ctx.settings.portal_port, workers=WORKERS, threads=THREADS,
                             env=env(ctx))]


def url(ctx: Context) -> str:
    return f"http://{ctx.settings.host('portal')}:{ctx.settings.portal_port}"


def ready(ctx: Context) -> None:
    http_ok(f"{url(ctx)}/healthz")


SERVICE = Service(
    name=NAME,
    description="Portal: web console (projects, runs, models), login, forward-auth",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.portal_port],
    install=install,
    start_timeout=60,
)
