"""Traefik: the one public address, TLS, routes by path, forward-auth to the portal.

Why Traefik's file provider with templated upstreams: docs/decisions/0007-entry-point.md.
Natively Traefik is built from the Go module proxy (its go.mod has ``replace``
directives, so ``go install`` refuses it: the module is built in a copy of its
source); in Compose it is the ``traefik`` image. Both read compose/traefik/: the
static traefik.yml (natively a copy with this host's addresses) and
dynamic/routes.yml, whose upstreams come from the SKIFF_* variables of
:func:`route_env`.

It starts without its upstreams (a route whose service is down answers 502), so
it depends on nothing; the routes are only as good as the services behind them.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import yaml

from skiff import tls
from skiff.native import installing
from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service

NAME = "traefik"
MODULE = "github.com/traefik/traefik/v3"
PACKAGE = "./cmd/traefik"


def binary(ctx: Context) -> Path:
    return ctx.component(NAME, ctx.versions.traefik_version) / "bin" / NAME


def install(ctx: Context) -> None:
    version = ctx.versions.traefik_version
    # -s -w: no symbol tables (the binary is ~245 MB with them); the version stamp is
    # what `traefik version` and the dashboard show (Traefik's own Makefile does the same).
    installing.go_binary(NAME, PACKAGE, version, ctx.component(NAME, version), NAME,
                         module=MODULE,
                         ldflags=f"-s -w -X {MODULE}/pkg/version.Version={version}")


def upstreams(ctx: Context) -> dict[str, str]:
    """Where each route's service listens natively; Compose sets service:port instead."""
    s = ctx.settings

    def at(service: str, port: int) -> str:
        return f"http://{s.host(service)}:{port}"

    return {
        "SKIFF_PORTAL_URL": at("portal", s.portal_port),
        "SKIFF_KEYCLOAK_URL": at("keycloak", s.keycloak_port),
        "SKIFF_JUPYTERHUB_URL": at("jupyterhub", s.jupyterhub_port),
        "SKIFF_AIRFLOW_URL": at("airflow", s.airflow_port),
        "SKIFF_MLFLOW_URL": at("mlflow", s.mlflow_port),
        "SKIFF_MODEL_SERVER_URL": at("model_server", s.model_server_port),
    }


def route_env(ctx: Context) -> dict[str, str]:
    """Every variable compose/traefik/dynamic/routes.yml reads."""
    s = ctx.settings
    cert, key = s.tls_files(ctx.root)
    return {**upstreams(ctx), "SKIFF_TLS_CERT": str(cert), "SKIFF_TLS_KEY": str(key),
            "SKIFF_HTTPS_PORT": str(s.https_port)}


def static_config(ctx: Context) -> dict:
    """compose/traefik/traefik.yml with this host's addresses and folders."""
    s = ctx.settings
    config = yaml.safe_load(ctx.compose_file(NAME, "traefik.yml").read_text())
    config["entryPoints"]["web"]["address"] = f"{s.bind_host}:{s.http_port}"
    config["entryPoints"]["websecure"]["address"] = f"{s.bind_host}:{s.https_port}"
    config["providers"]["file"]["directory"] = str(ctx.compose_file(NAME, "dynamic"))
    return config


def config_path(ctx: Context) -> Path:
    return ctx.conf_dir(NAME) / "traefik.yml"


def prepare(ctx: Context) -> None:
    # The certificate must exist before Traefik reads the routes (otherwise it serves
    # its own self-signed one); `skiff init` made it, this covers older checkouts.
    tls.ensure(ctx.root, ctx.settings)
    header = "# Written by `skiff up` from compose/traefik/traefik.yml; edit that file.\n"
    config_path(ctx).write_text(header + yaml.safe_dump(static_config(ctx), sort_keys=False))


def programs(ctx: Context) -> list[Program]:
    return [Program(
        name=NAME,
        command=[str(binary(ctx)), f"--configFile={config_path(ctx)}"],
        env=route_env(ctx),
        directory=ctx.data_dir(NAME),
    )]


def public_url(ctx: Context) -> str:
    return ctx.settings.public_url


def ping_url(ctx: Context) -> str:
    s = ctx.settings
    return f"https://{s.bind_host}:{s.https_port}/ping"


def ready(ctx: Context) -> None:
    """GET /ping over TLS, checked against our CA when we made the certificate.

    The check catches the quiet failure: Traefik falls back to a self-signed
    certificate of its own when it cannot load ours.
    """
    ca = ctx.root / "certs" / "ca.crt"
    provided = bool(ctx.settings.tls_cert_file)
    verify: ssl.SSLContext | bool = (ssl.create_default_context(cafile=str(ca))
                                     if not provided and ca.is_file() else False)
    try:
        resp = httpx.get(ping_url(ctx), verify=verify, timeout=3)
    except httpx.HTTPError as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise NotReady(f"/ping answered {resp.status_code}")


SERVICE = Service(
    name=NAME,
    description="Traefik: the one public address (TLS), routes by path, forward-auth",
    programs=programs,
    ready=ready,
    url=public_url,
    ports=lambda ctx: [ctx.settings.http_port, ctx.settings.https_port],
    install=install,
    prepare=prepare,
    start_timeout=30,
)
