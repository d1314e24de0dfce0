"""Traefik's configuration, checked without Traefik: routes, middlewares, both modes' variables.

compose/traefik/dynamic/routes.yml is a Go template; the only action it may use
is {{ env "NAME" }}, which these tests render the way Traefik does, then match
request paths against the routers with Traefik's rules and priorities.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from skiff.native.context import Context
from skiff.services import REGISTRY, mlflow, portal, traefik
from skiff.settings import Settings
from tests.unit.conftest import compose_environment
from tests.unit.test_compose_file import assert_listens, interpolate

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ROUTES = ROOT / "compose/traefik/dynamic/routes.yml"
ACTION = re.compile(r"\{\{(.*?)\}\}")
ENV_ACTION = re.compile(r'^\s*env\s+"([A-Z0-9_]+)"\s*$')
MATCHER = re.compile(r"(Path|PathPrefix)\(`([^`]*)`\)")
IDENTITY = {"X-Forwarded-User", "X-Auth-Request-User", "X-Auth-Request-Email",
            "X-Auth-Request-Roles", "X-Auth-Request-Groups"}


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    for name, field in Settings.model_fields.items():
        if field.is_required():
            monkeypatch.setenv(name.upper(), "x")
    for name, value in {"BIND_HOST": "127.0.0.1", "HTTPS_PORT": "9443", "HTTP_PORT": "9080",
                        "PUBLIC_HOST": "skiff.example.org", "TLS_CERT_FILE": "", "TLS_KEY_FILE": ""}.items():
        monkeypatch.setenv(name, value)
    return Context(root=ROOT, cache=tmp_path / "cache", state=tmp_path / "state")


def variables_used() -> set[str]:
    names = set()
    for action in ACTION.findall(ROUTES.read_text()):
        match = ENV_ACTION.match(action)
        assert match, f"routes.yml may only use {{{{ env \"NAME\" }}}}, found {{{{{action}}}}}"
        names.add(match.group(1))
    return names


def render(env: dict[str, str]) -> dict[str, Any]:
    def one(match: re.Match[str]) -> str:
        return env[ENV_ACTION.match(match.group(1)).group(1)]  # type: ignore[union-attr]

    return yaml.safe_load(ACTION.sub(one, ROUTES.read_text()))  # type: ignore[no-any-return]


def matches(rule: str, path: str) -> bool:
    # Our rules are matchers joined by ||; Traefik's grammar has more, routes.yml does not.
    parts = [p.strip() for p in rule.split("||")]
    assert all(MATCHER.fullmatch(p) for p in parts), f"unexpected rule {rule!r}"
    return any((kind == "Path" and path == arg) or (kind == "PathPrefix" and path.startswith(arg))
               for kind, arg in (MATCHER.fullmatch(p).groups() for p in parts))  # type: ignore[union-attr]


def route(config: dict[str, Any], path: str, entry_point: str = "websecure") -> tuple[str, dict[str, Any]]:
    """The router Traefik picks for ``path``: the highest priority among those matching."""
    routers = config["http"]["routers"]
    candidates = [(r.get("priority", len(r["rule"])), name) for name, r in routers.items()
                  if entry_point in r["entryPoints"] and matches(r["rule"], path)]
    assert candidates, f"no router for {path}"
    top = max(candidates)
    assert [c for c in candidates if c[0] == top[0]] == [top], f"two routers tie for {path}"
    return top[1], routers[top[1]]


@pytest.fixture
def native(ctx: Context) -> dict[str, Any]:
    return render(traefik.route_env(ctx))


@pytest.mark.parametrize(("path", "service", "auth"), [
    ("/", "portal", None),
    ("/some/page", "portal", None),
    ("/oauth2/callback", "portal", None),
    ("/oauth2/auth", "portal", None),
    ("/auth/realms/skiff/protocol/openid-connect/auth", "keycloak", None),
    ("/jupyter", "jupyterhub", None),
    ("/jupyter/hub/login", "jupyterhub", None),
    ("/airflow/", "airflow", None),
    ("/airflow/api/v2/dags", "airflow", None),
    ("/mlflow", "mlflow", "auth-mlflow"),
    ("/mlflow/", "mlflow", "auth-mlflow"),
    ("/mlflow/api/2.0/mlflow/experiments/search", "mlflow", "auth-mlflow"),
    ("/mlflow/health", "mlflow", None),
    ("/model/v1/predict", "model-server", None),
    ("/model/healthz", "model-server", None),
    ("/catalog/api/v1/assets", "catalog", None),
    ("/catalog/healthz", "catalog", None),
    ("/events/api/v1/runs", "notifications", "auth-bearer"),
    ("/events/api/v1/runs/dag/run/stream", "notifications", "auth-bearer"),
    ("/events/healthz", "notifications", None),
    # Its /metrics is not published: the path falls to the portal.
    ("/events/metrics", "portal", None),
    # Nor the model server's, nor the master realm (logins, admin console).
    ("/model/metrics", "portal", None),
    ("/auth/realms/master/protocol/openid-connect/token", "portal", None),
    ("/auth/admin/master/console/", "portal", None),
    ("/auth/admin/realms/master/users", "portal", None),
    ("/auth/admin/skiff/console/", "keycloak", None),
    ("/prometheus", "prometheus", "auth-prometheus"),
    ("/prometheus/api/v1/targets", "prometheus", "auth-prometheus"),
    ("/dashboard/", "api@internal", "auth-admin"),
    ("/dashboard", "api@internal", "auth-admin"),
    ("/api/rawdata", "api@internal", "auth-admin"),
])
def test_each_path_reaches_its_service_with_the_right_login(
        native: dict[str, Any], path: str, service: str, auth: str | None) -> None:
    _, router = route(native, path)
    assert router["service"] == service
    auths = [m for m in router.get("middlewares", []) if m.startswith("auth-")]
    assert auths == ([auth] if auth else [])


def test_plain_http_redirects_to_the_public_https_port(native: dict[str, Any]) -> None:
    _, router = route(native, "/mlflow/", entry_point="web")
    assert router["service"] == "noop@internal"
    redirect = native["http"]["middlewares"][router["middlewares"][0]]["redirectScheme"]
    assert redirect["scheme"] == "https" and str(redirect["port"]) == "9443"


def test_user_facing_routes_add_security_headers(native: dict[str, Any]) -> None:
    for name, router in native["http"]["routers"].items():
        if "websecure" in router["entryPoints"] and not name.endswith("-health"):
            assert router["middlewares"][0] == "security-headers", name
    headers = native["http"]["middlewares"]["security-headers"]["headers"]
    assert headers["contentTypeNosniff"] and headers["customFrameOptionsValue"] == "SAMEORIGIN"


def forward_auth(config: dict[str, Any], name: str) -> tuple[str, set[str], dict[str, Any]]:
    spec = config["http"]["middlewares"][name]["forwardAuth"]
    url = urlsplit(spec["address"])
    roles = set(parse_qs(url.query)["roles"][0].split(","))
    return f"{url.scheme}://{url.netloc}{url.path}", roles, spec


def test_the_dashboard_is_for_admins_only(native: dict[str, Any], ctx: Context) -> None:
    address, roles, spec = forward_auth(native, "auth-admin")
    assert address == f"{portal.url(ctx)}/oauth2/auth"
    assert roles == {"admin"}
    assert set(spec["authResponseHeaders"]) == IDENTITY


def test_mlflow_lets_every_realm_role_in(native: dict[str, Any], ctx: Context) -> None:
    realm = json.loads((ROOT / "compose/keycloak/realm-skiff.json").read_text())
    address, roles, spec = forward_auth(native, "auth-mlflow")
    assert address == f"{portal.url(ctx)}/oauth2/auth"
    assert roles == {r["name"] for r in realm["roles"]["realm"]}
    # MLflow checks each change against the person's roles itself: it gets their token
    # (bearer mode), and clients cannot pass an identity of their own (Traefik
    # overwrites these headers).
    assert parse_qs(urlsplit(spec["address"]).query)["bearer"] == ["1"]
    assert set(spec["authResponseHeaders"]) == IDENTITY | {"Authorization"}


def test_prometheus_is_for_admins_and_data_engineers_and_keeps_its_prefix(native: dict[str, Any]) -> None:
    # Prometheus serves under /prometheus itself (--web.route-prefix): nothing stripped.
    _, router = route(native, "/prometheus/graph")
    assert not [m for m in router["middlewares"] if m.startswith("strip")]
    address = native["http"]["middlewares"]["auth-prometheus"]["forwardAuth"]["address"]
    assert parse_qs(urlsplit(address).query)["roles"] == ["admin,data-engineer"]


def test_the_model_api_loses_its_prefix(native: dict[str, Any]) -> None:
    _, router = route(native, "/model/v1/predict")
    strip = [native["http"]["middlewares"][m] for m in router["middlewares"] if m.startswith("strip")]
    assert strip == [{"stripPrefix": {"prefixes": ["/model"]}}]


def test_the_events_api_loses_its_prefix_and_gets_a_bearer_token(native: dict[str, Any]) -> None:
    for path in ("/events/api/v1/stream", "/events/healthz"):
        _, router = route(native, path)
        assert "strip-events" in router["middlewares"]
    assert native["http"]["middlewares"]["strip-events"] == {"stripPrefix": {"prefixes": ["/events"]}}
    auth = native["http"]["middlewares"]["auth-bearer"]["forwardAuth"]
    assert auth["address"].endswith("/oauth2/auth?bearer=1")
    # The token the portal answers with replaces what the browser sent.
    assert "Authorization" in auth["authResponseHeaders"]


def test_the_catalog_api_loses_its_prefix(native: dict[str, Any]) -> None:
    _, router = route(native, "/catalog/api/v1/me")
    strip = [native["http"]["middlewares"][m] for m in router["middlewares"] if m.startswith("strip")]
    assert strip == [{"stripPrefix": {"prefixes": ["/catalog"]}}]


def test_native_upstreams_are_each_services_loopback_address(native: dict[str, Any], ctx: Context) -> None:
    s = ctx.settings
    servers = {name: svc["loadBalancer"]["servers"][0]["url"]
               for name, svc in native["http"]["services"].items()}
    assert servers == {
        "portal": f"http://127.0.0.1:{s.portal_port}",
        "keycloak": f"http://127.0.0.1:{s.keycloak_port}",
        "jupyterhub": f"http://127.0.0.1:{s.jupyterhub_port}",
        "airflow": f"http://127.0.0.1:{s.airflow_port}",
        "mlflow": f"http://127.0.0.1:{s.mlflow_port}",
        "model-server": f"http://127.0.0.1:{s.model_server_port}",
        "catalog": f"http://127.0.0.1:{s.catalog_port}",
        "notifications": f"http://127.0.0.1:{s.notifications_port}",
        "prometheus": f"http://127.0.0.1:{s.prometheus_port}",
    }
    assert mlflow.tracking_uri(ctx) == f"{servers['mlflow']}{mlflow.STATIC_PREFIX}"


def test_the_certificate_is_the_default_one(native: dict[str, Any], ctx: Context) -> None:
    default = native["tls"]["stores"]["default"]["defaultCertificate"]
    assert (default["certFile"], default["keyFile"]) == tuple(map(str, ctx.settings.tls_files(ROOT)))
    assert native["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"


def test_traefik_is_given_every_variable_the_routes_use(ctx: Context) -> None:
    # Both modes run the same program (skiff-run traefik in Compose), whose env this is.
    assert variables_used() == set(traefik.route_env(ctx))


def test_compose_upstreams_are_compose_services_on_their_native_ports(
        compose_ctx: Context, compose_doc: dict[str, Any]) -> None:
    upstreams = traefik.upstreams(compose_ctx)
    for name, url in upstreams.items():
        parts = urlsplit(url)
        assert_listens(compose_ctx, compose_doc, parts.hostname, parts.port, name)
    # The routes Traefik's container renders send each service there.
    config = render(traefik.route_env(compose_ctx))
    servers = {svc["loadBalancer"]["servers"][0]["url"] for svc in config["http"]["services"].values()}
    assert servers == set(upstreams.values())
    assert upstreams["SKIFF_KEYCLOAK_URL"] == "http://keycloak:8180"
    # The portal checks the same services' health.
    [portal_program] = portal.programs(compose_ctx)
    assert {k: v for k, v in portal_program.env.items() if k.startswith("SKIFF_")} == upstreams


def test_compose_publishes_the_entry_points_traefik_listens_on(
        compose_ctx: Context, compose_doc: dict[str, Any]) -> None:
    entry_points = traefik.static_config(compose_ctx)["entryPoints"]
    addresses = [entry_points[ep]["address"] for ep in ("web", "websecure")]
    # On every interface of its container: Docker forwards the published ports there.
    assert all(a.startswith("0.0.0.0:") for a in addresses), addresses
    inside = {a.rsplit(":", 1)[1] for a in addresses}
    ports = compose_doc["services"]["traefik"]["ports"]
    published = [interpolate(p, compose_environment(ROOT, compose_doc)).split(":") for p in ports]
    assert all(host == container for host, container in published), published
    assert {container for _, container in published} == inside
    # A .env without HTTP_PORT/HTTPS_PORT: the file's defaults are the settings' own.
    defaults = {interpolate(p, {}).rsplit(":", 1)[1] for p in ports}
    fields = Settings.model_fields
    assert defaults == {str(fields["http_port"].default), str(fields["https_port"].default)}


def test_native_static_config_uses_this_hosts_addresses(ctx: Context) -> None:
    config = traefik.static_config(ctx)
    assert config["entryPoints"]["web"]["address"] == "127.0.0.1:9080"
    assert config["entryPoints"]["websecure"]["address"] == "127.0.0.1:9443"
    assert config["providers"]["file"]["directory"] == str(ROUTES.parent)
    # Never the unauthenticated dashboard, and health on an entry point we own.
    assert not config["api"].get("insecure")
    assert config["ping"]["entryPoint"] in config["entryPoints"]


def test_traefik_runs_the_native_copy_with_the_routes_variables(ctx: Context) -> None:
    [program] = traefik.programs(ctx)
    assert program.command == [str(traefik.binary(ctx)), f"--configFile={traefik.config_path(ctx)}"]
    assert program.env == traefik.route_env(ctx)
    # Variables named TRAEFIK_* would be read as a second static configuration.
    assert not [k for k in program.env if k.startswith("TRAEFIK_")]


def test_traefik_and_the_portal_are_services(ctx: Context) -> None:
    assert REGISTRY["traefik"].ports(ctx) == [9080, 9443]
    assert REGISTRY["traefik"].url(ctx) == "https://skiff.example.org:9443"
    [program] = portal.programs(ctx)
    assert program.env["PORTAL_PUBLIC_URL"] == "https://skiff.example.org:9443"
    assert program.env["KEYCLOAK_ISSUER"] == "https://skiff.example.org:9443/auth/realms/skiff"
    assert program.command[-1] == "serving.portal.app:create_app()"


# --- install: Traefik is built from a copy of its module source ----------------------

FAKE_GO = """#!/bin/sh
# Plays `go`: `mod download -json` names a read-only source folder; `build` records
# where and how it ran, and writes the -o file.
echo "$@" >> "$GO_CALLS"
if [ "$1" = mod ]; then
  printf '{"Path": "github.com/traefik/traefik/v3", "Dir": "%s"}\\n' "$GO_SOURCE"; exit 0
fi
pwd >> "$GO_CALLS"
touch cmd/traefik/built-here
while [ "$1" != -o ]; do shift; done
echo binary > "$2"
"""


def test_traefik_install_builds_a_writable_copy_of_the_module(
        ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "modcache" / "traefik@v"
    (source / "cmd" / "traefik").mkdir(parents=True)
    (source / "go.mod").write_text("module github.com/traefik/traefik/v3\n")
    for folder in (source / "cmd" / "traefik", source / "cmd", source):
        folder.chmod(0o555)  # as in Go's module cache
    # Not on PATH: what runs is the go that skiff.native.system.go_bin chose.
    go = tmp_path / "toolchain" / "bin" / "go"
    go.parent.mkdir(parents=True)
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    asked: list[Context] = []

    def go_bin(c: Context) -> Path:
        asked.append(c)
        return go

    monkeypatch.setattr(traefik.system, "go_bin", go_bin)
    calls = tmp_path / "calls"
    monkeypatch.setenv("GO_CALLS", str(calls))
    monkeypatch.setenv("GO_SOURCE", str(source))
    try:
        traefik.install(ctx)
    finally:
        for folder in (source, source / "cmd", source / "cmd" / "traefik"):
            folder.chmod(0o755)
    assert asked == [ctx]
    download, build, where = calls.read_text().splitlines()
    version = ctx.versions.traefik_version
    assert download == f"mod download -json github.com/traefik/traefik/v3@{version}"
    assert build.startswith("build -v -trimpath -ldflags -s -w -X "
                            f"github.com/traefik/traefik/v3/pkg/version.Version={version} -o ")
    assert build.endswith(" ./cmd/traefik")
    dest = ctx.component("traefik", version)
    assert where == str(dest / "src")
    assert traefik.binary(ctx).read_text() == "binary\n"
    assert not (dest / "src").exists(), "the source copy is removed after the build"
    assert not (source / "cmd" / "traefik" / "built-here").exists(), "the module cache is untouched"
    calls.unlink()
    traefik.install(ctx)  # installed: nothing runs
    assert not calls.exists()
