"""The entry point on the real stack: Traefik's TLS and routes, the portal's login and logout.

Clients trust only certs/ca.crt (the CA `skiff init` made). Logins are scripted
the way a browser does them: the portal sends us to Keycloak's login form (through
Traefik, on the public address), we post the password, Keycloak sends us back to
the portal's callback with a code, the portal sets its session cookie.
"""

from __future__ import annotations

import html
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from skiff import keycloak
from skiff.native.context import Context
from skiff.services import REGISTRY

# SSO through the one door: also run against Compose (make test-compose).
pytestmark = [pytest.mark.integration, pytest.mark.compose]

BROWSER = {"Accept": "text/html,application/xhtml+xml"}
API = {"Accept": "application/json"}
LOGIN_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', re.S)


@pytest.fixture(scope="module")
def gateway(stack: Context) -> Context:
    for name in ("traefik", "portal", "keycloak", "mlflow"):
        if name not in REGISTRY:
            pytest.skip(f"{name} is not in skiff.services.REGISTRY yet")
    return stack


@pytest.fixture(scope="module")
def trust(gateway: Context) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(gateway.root / "certs" / "ca.crt"))


def client(ctx: Context, trust: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(base_url=ctx.settings.public_url, verify=trust, timeout=30,
                        follow_redirects=False)


@pytest.fixture(scope="module")
def users(gateway: Context) -> Iterator[dict[str, tuple[str, str]]]:
    """Two fresh realm users, an admin and a data scientist: name -> (role, password)."""
    admin = keycloak.admin_client(gateway.settings)
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, tuple[str, str]] = {}
    try:
        for role in ("admin", "data-scientist"):
            name = f"gw-{role}-{suffix}"
            made[name] = (role, keycloak.create_user(gateway.settings, name, role, "gateway-tests",
                                                     admin=admin))
        yield made
    finally:
        for name in made:
            found = keycloak.find_user(admin, name)
            if found:
                admin.delete_user(found["id"])


def named(users: dict[str, tuple[str, str]], role: str) -> tuple[str, str]:
    return next((name, pw) for name, (r, pw) in users.items() if r == role)


@contextmanager
def browser_login(ctx: Context, trust: ssl.SSLContext, user: str, password: str) -> Iterator[httpx.Client]:
    """A client holding the portal's session cookie after a real code flow."""
    with client(ctx, trust) as web:
        _log_in(ctx, web, user, password)
        yield web


def _log_in(ctx: Context, web: httpx.Client, user: str, password: str) -> None:
    resp = web.get("/oauth2/start", params={"rd": "/"})
    assert resp.status_code == 302
    for _ in range(3):  # Keycloak may redirect once within itself before the form
        resp = web.get(resp.headers["location"], headers=BROWSER)
        if resp.status_code == 200:
            break
        assert resp.status_code in (302, 303), resp.text[:500]
    form = LOGIN_FORM.search(resp.text)
    assert form, f"no login form at {resp.url}:\n{resp.text[:1000]}"
    resp = web.post(html.unescape(form.group(1)), data={"username": user, "password": password},
                    headers=BROWSER)
    assert resp.status_code == 302, f"Keycloak did not accept the login: {resp.text[:1000]}"
    callback = resp.headers["location"]
    assert callback.startswith(f"{ctx.settings.public_url}/oauth2/callback?")
    resp = web.get(callback, headers=BROWSER)
    assert resp.status_code == 302, resp.text[:1000]
    assert resp.headers["location"] == "/"


def mlflow_token(ctx: Context, user: str, password: str) -> str:
    """What an API client of MLflow holds: a password-grant token of client mlflow."""
    return keycloak.user_token(ctx.settings, user, password, client_id="mlflow")


# --- TLS and HTTP -------------------------------------------------------------------

def test_https_serves_our_certificate_for_the_public_host(gateway: Context, trust: ssl.SSLContext) -> None:
    s = gateway.settings
    with socket.create_connection(("127.0.0.1", s.https_port), timeout=5) as raw, \
            trust.wrap_socket(raw, server_hostname=s.public_host) as conn:
        served = conn.getpeercert(binary_form=True)
        assert conn.version() in ("TLSv1.2", "TLSv1.3")
    cert, _ = s.tls_files(gateway.root)
    ours = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert served == ours


def test_plain_http_redirects_to_https(gateway: Context) -> None:
    s = gateway.settings
    resp = httpx.get(f"http://{s.public_host}:{s.http_port}/mlflow/?page=2", follow_redirects=False,
                     timeout=10)
    assert resp.status_code in (301, 302, 307, 308)
    assert resp.headers["location"] == f"{s.public_url}/mlflow/?page=2"


def test_health_endpoints_answer_without_login(gateway: Context, trust: ssl.SSLContext) -> None:
    s = gateway.settings
    assert httpx.get(f"http://127.0.0.1:{s.http_port}/ping", timeout=10).status_code == 200
    with client(gateway, trust) as web:
        assert web.get("/mlflow/health").status_code == 200


# --- nothing without login ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/mlflow/", "/mlflow/#/experiments", "/dashboard/", "/api/overview"])
def test_a_browser_without_login_is_sent_to_keycloak(
        gateway: Context, trust: ssl.SSLContext, path: str) -> None:
    with client(gateway, trust) as web:
        resp = web.get(path, headers=BROWSER)
    assert resp.status_code == 302
    login = urlsplit(resp.headers["location"])
    assert f"{login.scheme}://{login.netloc}{login.path}" == \
        f"{gateway.settings.keycloak_issuer}/protocol/openid-connect/auth"
    assert "client_id=portal" in login.query


@pytest.mark.parametrize("path", ["/", "/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
                                  "/dashboard/", "/api/rawdata", "/oauth2/me"])
def test_an_api_client_without_token_gets_401(gateway: Context, trust: ssl.SSLContext, path: str) -> None:
    with client(gateway, trust) as web:
        resp = web.get(path, headers=API)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"


def test_a_token_for_another_audience_is_refused(gateway: Context, trust: ssl.SSLContext) -> None:
    device = keycloak.device_token(gateway.settings)  # audience model-api
    with client(gateway, trust) as web:
        resp = web.get("/prometheus/api/v1/query", params={"query": "up"},
                       headers={**API, "Authorization": f"Bearer {device}"})
        assert resp.status_code == 401
        assert "audience" in resp.json()["message"]
        # MLflow's route passes any token of the realm on (MLflow checks it itself), but
        # a device holds none of the platform's roles.
        mlflow = web.get("/mlflow/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                         headers={**API, "Authorization": f"Bearer {device}"})
        assert mlflow.status_code == 403
        assert mlflow.json()["error"] == "forbidden"


@pytest.mark.parametrize("path", ["/auth/realms/master/.well-known/openid-configuration",
                                  "/auth/realms/master/protocol/openid-connect/token",
                                  "/auth/admin/master/console/", "/auth/admin/realms/master/users",
                                  "/model/metrics"])
def test_what_stays_inside_is_not_on_the_public_address(
        gateway: Context, trust: ssl.SSLContext, path: str) -> None:
    """The master realm (its logins, admin console and admin API) and the model server's
    metrics do not reach their service through Traefik: the portal knows no such page."""
    with client(gateway, trust) as web:
        resp = web.get(path, headers=API)
        assert resp.status_code == 404, resp.text[:200]
        assert "issuer" not in resp.text and "skiff_model_server" not in resp.text
        # The platform's realm is still there for everyone's logins.
        assert web.get("/auth/realms/skiff/.well-known/openid-configuration").status_code == 200


# --- with a login ---------------------------------------------------------------------

def test_mlflows_api_answers_a_keycloak_bearer_token(
        gateway: Context, trust: ssl.SSLContext, users: dict[str, tuple[str, str]]) -> None:
    token = mlflow_token(gateway, *named(users, "data-scientist"))
    with client(gateway, trust) as web:
        resp = web.get("/mlflow/api/2.0/mlflow/experiments/search", params={"max_results": 5},
                       headers={**API, "Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text[:500]
    assert "experiments" in resp.json()


def test_a_browser_session_opens_the_landing_page_and_mlflow(
        gateway: Context, trust: ssl.SSLContext, users: dict[str, tuple[str, str]]) -> None:
    name, password = named(users, "data-scientist")
    with browser_login(gateway, trust, name, password) as web:
        page = web.get("/", headers=BROWSER)
        assert page.status_code == 200
        assert f'id="username">{name}<' in page.text
        assert "data-scientist" in page.text and "gateway-tests" in page.text
        assert re.search(r'data-service="mlflow">up', page.text), page.text
        assert f"{gateway.settings.public_url}/jupyter/" in page.text
        ui = web.get("/mlflow/", headers=BROWSER)
        assert ui.status_code == 200 and "<html" in ui.text.lower()


def test_a_non_admin_cannot_reach_the_dashboard(
        gateway: Context, trust: ssl.SSLContext, users: dict[str, tuple[str, str]]) -> None:
    name, password = named(users, "data-scientist")
    token = mlflow_token(gateway, name, password)
    with browser_login(gateway, trust, name, password) as web:
        assert web.get("/dashboard/", headers=BROWSER).status_code == 403
        assert web.get("/api/overview", headers=API).status_code == 403
    with client(gateway, trust) as api:
        assert api.get("/api/overview", headers={**API, "Authorization": f"Bearer {token}"}
                       ).status_code == 403


def test_an_admin_reaches_traefiks_api(
        gateway: Context, trust: ssl.SSLContext, users: dict[str, tuple[str, str]]) -> None:
    token = mlflow_token(gateway, *named(users, "admin"))
    with client(gateway, trust) as web:
        resp = web.get("/api/http/routers", headers={**API, "Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert {"mlflow@file", "portal@file", "dashboard@file"} <= {r["name"] for r in resp.json()}


def test_keycloak_logout_ends_the_portal_session(
        gateway: Context, trust: ssl.SSLContext, users: dict[str, tuple[str, str]]) -> None:
    name, password = named(users, "data-scientist")
    with browser_login(gateway, trust, name, password) as web:
        assert web.get("/oauth2/me", headers=API).json()["username"] == name
        assert web.get("/mlflow/", headers=BROWSER).status_code == 200
        # An administrator ends the user's sessions in Keycloak; Keycloak tells the
        # portal over the back channel (POST /oauth2/backchannel-logout).
        admin = keycloak.admin_client(gateway.settings)
        admin.user_logout(keycloak.find_user(admin, name)["id"])  # type: ignore[index]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = web.get("/oauth2/me", headers=API).status_code
            if status == 401:
                break
            time.sleep(0.3)
        assert status == 401, "the portal session outlived the Keycloak session"
        assert web.get("/mlflow/", headers=BROWSER).status_code == 302


def test_logout_from_the_portal_ends_keycloaks_session_too(
        gateway: Context, trust: ssl.SSLContext, users: dict[str, tuple[str, str]]) -> None:
    name, password = named(users, "data-scientist")
    with browser_login(gateway, trust, name, password) as web:
        resp = web.get("/oauth2/logout", headers=BROWSER)
        assert resp.status_code == 302
        end = urlsplit(resp.headers["location"])
        assert end.path.endswith("/protocol/openid-connect/logout") and "id_token_hint=" in end.query
        assert web.get(resp.headers["location"], headers=BROWSER).status_code in (200, 302)
        assert web.get("/oauth2/me", headers=API).status_code == 401
        # Keycloak forgot the browser too: starting again shows the login form.
        again = web.get(web.get("/oauth2/start").headers["location"], headers=BROWSER)
        assert again.status_code == 200 and LOGIN_FORM.search(again.text)
