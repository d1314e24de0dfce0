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

import socket
import ssl
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from skiff import tls
from skiff.native import installing, system
from skiff.native.context import Context
from skiff.native.probes import http_ok
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
                         go=lambda: system.go_bin(ctx), module=MODULE,
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
        "SKIFF_CATALOG_URL": at("catalog", s.catalog_port),
        "SKIFF_NOTIFICATIONS_URL": at("notifications", s.notifications_port),
        "SKIFF_PROMETHEUS_URL": at("prometheus", s.prometheus_port),
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
    return f"http://{s.bind_host}:{s.http_port}/ping"


def check_certificate(ctx: Context) -> None:
    """NotReady unless HTTPS serves our certificate, valid for the public host.

    This catches the quiet failure: when Traefik cannot load our files it serves
    a self-signed certificate of its own and carries on.
    """
    s = ctx.settings
    cert, _ = s.tls_files(ctx.root)
    ca = None if s.tls_cert_file else ctx.root / "certs" / "ca.crt"
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if ca is None:
        # A provided certificate may chain to a CA this machine does not trust: then
        # compare it with the file instead of checking the chain.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((s.bind_host, s.https_port), timeout=3) as raw, \
                context.wrap_socket(raw, server_hostname=s.public_host) as conn:
            served = conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise NotReady(f"HTTPS on {s.https_port}: {type(exc).__name__}: {exc}") from exc
    # The file's first certificate is the server's (the CA's may follow).
    wanted = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    if served != wanted:
        raise NotReady(f"HTTPS on {s.https_port} serves another certificate than {cert}")


def ready(ctx: Context) -> None:
    """GET /ping answers, and HTTPS serves our certificate."""
    http_ok(ping_url(ctx))
    check_certificate(ctx)


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
