"""The portal without Keycloak: Flask's test client, a local RSA key and its JWKS.

A fake token endpoint (a requests adapter) answers the code exchange with tokens
signed by that key, so the whole login, forward-auth and logout logic runs for
real; only Keycloak itself is played.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from requests.adapters import BaseAdapter

from serving.portal.app import LOGIN_COOKIE_PREFIX, SESSION_COOKIE, create_app, safe_return
from serving.portal.config import Config
from serving.portal.oidc import Keycloak, PendingLogin
from serving.portal.sessions import Identity, SessionStore
from serving.portal.tokens import BACKCHANNEL_LOGOUT_EVENT, Jwks, Verifier

pytestmark = pytest.mark.unit

PUBLIC = "https://localhost:8443"
ISSUER = f"{PUBLIC}/auth/realms/skiff"
INTERNAL = "http://keycloak.test:8180/auth"
TOKEN_ENDPOINT = f"{INTERNAL}/realms/skiff/protocol/openid-connect/token"
BROWSER = {"Accept": "text/html,application/xhtml+xml"}


class Realm:
    """Plays Keycloak: one signing key (rotatable), tokens for users."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.published = [self.key]
        self.jwks_fetches = 0

    def jwks(self, uri: str) -> dict[str, Any]:
        assert uri == f"{INTERNAL}/realms/skiff/protocol/openid-connect/certs"
        self.jwks_fetches += 1
        return {"keys": [k.as_dict(private=False) for k in self.published]}

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None) -> str:
        key = key or self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)

    def claims(self, user: str, roles: list[str], **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": ISSUER, "sub": f"id-{user}", "preferred_username": user,
                "email": f"{user}@example.org", "iat": now, "exp": now + 300, "sid": f"sid-{user}",
                "realm_access": {"roles": [*roles, "default-roles-skiff", "offline_access"]},
                "groups": ["cardiology"], **extra}


class TokenEndpoint(BaseAdapter):
    """Keycloak's token endpoint: the authorization code and refresh token grants."""

    def __init__(self, realm: Realm) -> None:
        super().__init__()
        self.realm = realm
        # code -> (user, roles, nonce)
        self.codes: dict[str, tuple[str, list[str], str]] = {}
        # refresh token -> (user, roles); a token taken out of here is refused (invalid_grant).
        self.refresh_tokens: dict[str, tuple[str, list[str]]] = {}
        self.requests: list[dict[str, list[str]]] = []
        # Lifetime of the access tokens handed out (Keycloak's realm: 300 s).
        self.expires_in = 300
        # Set: the endpoint cannot be reached (Keycloak down).
        self.down = False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url == TOKEN_ENDPOINT
        assert (request.headers.get("Authorization") or "").startswith("Basic ")
        if self.down:
            raise requests.ConnectionError("connection refused")
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        self.requests.append(form)
        resp = requests.Response()
        resp.headers["Content-Type"] = "application/json"
        resp.url = request.url
        resp.request = request
        nonce: str | None
        if form["grant_type"] == ["refresh_token"]:
            held = self.refresh_tokens.get(form["refresh_token"][0])
            if held is None:
                resp.status_code = 400
                resp._content = json.dumps({"error": "invalid_grant",
                                            "error_description": "Session not active"}).encode()
                return resp
            user, roles = held
            nonce = None
        else:
            user, roles, nonce = self.codes.pop(form["code"][0])
        base = self.realm.claims(user, roles)
        base["exp"] = base["iat"] + self.expires_in
        refresh = f"refresh-{user}-{len(self.requests)}"
        self.refresh_tokens[refresh] = (user, roles)
        body = {"access_token": self.realm.sign({**base, "azp": "portal", "typ": "Bearer",
                                                 "jti": f"a{len(self.requests)}"}),
                "refresh_token": refresh, "refresh_expires_in": 1800,
                "token_type": "Bearer", "expires_in": self.expires_in}
        if nonce is not None:
            body["id_token"] = self.realm.sign({**base, "aud": "portal", "nonce": nonce, "typ": "ID"})
        resp.status_code = 200
        resp._content = json.dumps(body).encode()
        resp.headers["Content-Type"] = "application/json"
        resp.url = request.url
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def health(request: httpx.Request) -> httpx.Response:
    # MLflow is down in this little world; everything else answers.
    return httpx.Response(503 if request.url.path == "/mlflow/health" else 200)


@pytest.fixture
def realm() -> Realm:
    return Realm()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.from_env({
        "PORTAL_PUBLIC_URL": PUBLIC, "KEYCLOAK_ISSUER": ISSUER, "KEYCLOAK_INTERNAL_URL": INTERNAL,
        "KEYCLOAK_REALM": "skiff", "PORTAL_CLIENT_SECRET": "client-secret",
        "PORTAL_COOKIE_SECRET": "cookie-secret", "PORTAL_SESSION_DB": str(tmp_path / "sessions.db"),
        "SKIFF_MLFLOW_URL": "http://mlflow.test:5000", "SKIFF_AIRFLOW_URL": "http://airflow.test:8080",
        "SKIFF_MODEL_SERVER_URL": "http://model.test:8000",
    })


@pytest.fixture
def endpoint(realm: Realm) -> TokenEndpoint:
    return TokenEndpoint(realm)


@pytest.fixture
def app(config: Config, realm: Realm, endpoint: TokenEndpoint) -> flask.Flask:
    verifier = Verifier(Jwks(config.jwks_uri, fetch=realm.jwks, refresh_floor=0), config.issuer)
    return create_app(config, verifier=verifier, keycloak=Keycloak(config, verifier, adapter=endpoint),
                      health_client=lambda: httpx.Client(transport=httpx.MockTransport(health)))


@pytest.fixture
def client(app: flask.Flask) -> Any:
    return app.test_client()


def login(client: Any, endpoint: TokenEndpoint, user: str = "dana", roles: list[str] | None = None,
          rd: str = "/") -> str:
    """The code flow as a browser runs it; returns where the portal sends us afterwards."""
    started = client.get("/oauth2/start", query_string={"rd": rd}, base_url=PUBLIC)
    assert started.status_code == 302
    params = parse_qs(urlsplit(started.location).query)
    endpoint.codes["code-" + user] = (user, roles if roles is not None else ["data-scientist"],
                                      params["nonce"][0])
    done = client.get("/oauth2/callback", query_string={"code": "code-" + user,
                                                        "state": params["state"][0]}, base_url=PUBLIC)
    assert done.status_code == 302, done.get_data(as_text=True)
    return str(done.location)


def forward(client: Any, uri: str, roles: str = "", accept: str = "text/html",
            host: str = "localhost:8443", method: str = "GET", **headers: str) -> Any:
    """What Traefik sends the portal before a request to a protected route."""
    return client.get("/oauth2/auth", query_string={"roles": roles} if roles else None,
                      base_url=PUBLIC,
                      headers={"Accept": accept, "X-Forwarded-Method": method,
                               "X-Forwarded-Proto": "https", "X-Forwarded-Host": host,
                               "X-Forwarded-Uri": uri, **headers})


# --- login ---------------------------------------------------------------------

def test_health_is_open(client: Any) -> None:
    resp = client.get("/healthz")
    assert (resp.status_code, resp.json) == (200, {"status": "ok"})


def test_a_browser_without_session_is_sent_to_keycloaks_public_login(client: Any) -> None:
    resp = client.get("/", headers=BROWSER, base_url=PUBLIC)
    assert resp.status_code == 302
    url = urlsplit(resp.location)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{ISSUER}/protocol/openid-connect/auth"
    q = parse_qs(url.query)
    assert q["client_id"] == ["portal"] and q["response_type"] == ["code"]
    assert q["redirect_uri"] == [f"{PUBLIC}/oauth2/callback"]
    assert q["code_challenge_method"] == ["S256"] and q["code_challenge"][0]
    assert "openid" in q["scope"][0].split()
    cookie = client.get_cookie(LOGIN_COOKIE_PREFIX + q["state"][0][:16], domain="localhost",
                               path="/oauth2/")
    assert cookie is not None and cookie.secure and cookie.http_only


def test_an_api_client_without_session_gets_401_json(client: Any) -> None:
    resp = client.get("/", headers={"Accept": "application/json"}, base_url=PUBLIC)
    assert resp.status_code == 401
    assert resp.json["error"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_login_exchanges_the_code_with_pkce_and_opens_a_session(
        client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    [form] = endpoint.requests
    assert form["grant_type"] == ["authorization_code"]
    assert form["redirect_uri"] == [f"{PUBLIC}/oauth2/callback"]
    assert len(form["code_verifier"][0]) >= 43
    me = client.get("/oauth2/me", base_url=PUBLIC)
    assert me.status_code == 200
    assert me.json["username"] == "dana" and me.json["roles"] == ["data-scientist"]
    assert me.json["groups"] == ["cardiology"]
    cookie = client.get_cookie(SESSION_COOKIE, domain="localhost")
    assert cookie.secure and cookie.http_only and cookie.same_site == "Lax"


def test_after_login_the_browser_goes_back_where_it_was_going(client: Any, endpoint: TokenEndpoint) -> None:
    assert login(client, endpoint, rd="/mlflow/?x=1") == "/mlflow/?x=1"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "http://localhost:8443/x"])
def test_login_never_sends_the_browser_to_another_site(config: Config, target: str) -> None:
    assert safe_return(config, target) == "/"


def test_a_public_absolute_url_keeps_its_path(config: Config) -> None:
    assert safe_return(config, f"{PUBLIC}/mlflow/?a=b") == "/mlflow/?a=b"


def test_a_callback_with_another_browsers_state_is_refused(client: Any, endpoint: TokenEndpoint) -> None:
    client.get("/oauth2/start", base_url=PUBLIC)
    resp = client.get("/oauth2/callback", query_string={"code": "c", "state": "not-ours"},
                      base_url=PUBLIC)
    assert resp.status_code == 400
    assert client.get_cookie(SESSION_COOKIE, domain="localhost") is None


def test_keycloaks_error_is_shown(client: Any) -> None:
    resp = client.get("/oauth2/callback", query_string={"error": "access_denied",
                                                        "error_description": "<b>no</b>"},
                      base_url=PUBLIC)
    assert resp.status_code == 400
    assert "&lt;b&gt;no&lt;/b&gt;" in resp.get_data(as_text=True)


def test_an_id_token_with_another_nonce_is_refused(client: Any, endpoint: TokenEndpoint) -> None:
    started = client.get("/oauth2/start", base_url=PUBLIC)
    state = parse_qs(urlsplit(started.location).query)["state"][0]
    endpoint.codes["c"] = ("mallory", ["admin"], "another-nonce")
    resp = client.get("/oauth2/callback", query_string={"code": "c", "state": state}, base_url=PUBLIC)
    assert resp.status_code == 502
    assert "nonce" in resp.get_data(as_text=True)
    assert client.get_cookie(SESSION_COOKIE, domain="localhost") is None


# --- the landing page ------------------------------------------------------------

def test_the_landing_page_shows_the_user_and_the_services(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint, roles=["data-engineer"])
    page = client.get("/", headers=BROWSER, base_url=PUBLIC).get_data(as_text=True)
    assert re.search(r'id="username">dana<', page)
    assert "data-engineer" in page and "default-roles-skiff" not in page
    assert "cardiology" in page
    for path in ("/jupyter/", "/airflow/", "/mlflow/", "/model/openapi.json"):
        assert f"{PUBLIC}{path}" in page
    assert re.search(r'data-service="airflow">up', page)
    assert re.search(r'data-service="mlflow">down', page)
    assert "/dashboard/" not in page  # admins only
    assert 'href="/oauth2/logout"' in page


def test_admins_see_the_dashboard_link(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint, user="ada", roles=["admin"])
    assert f"{PUBLIC}/dashboard/" in client.get("/", base_url=PUBLIC).get_data(as_text=True)


# --- forward-auth ----------------------------------------------------------------

def test_forward_auth_passes_a_session_with_its_identity(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint, roles=["viewer"])
    resp = forward(client, "/mlflow/", roles="admin,viewer")
    assert resp.status_code == 200
    assert resp.headers["X-Forwarded-User"] == "dana"
    assert resp.headers["X-Auth-Request-Email"] == "dana@example.org"
    assert resp.headers["X-Auth-Request-Roles"] == "viewer"
    assert resp.headers["X-Auth-Request-Groups"] == "cardiology"


def test_forward_auth_refuses_a_role_not_allowed(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint, roles=["data-scientist"])
    assert forward(client, "/dashboard/", roles="admin").status_code == 403
    api = forward(client, "/api/rawdata", roles="admin", accept="application/json")
    assert (api.status_code, api.json["error"]) == (403, "forbidden")


def test_forward_auth_sends_a_browser_to_login_keeping_the_url(client: Any, app: flask.Flask) -> None:
    resp = forward(client, "/mlflow/#/models?x=1")
    assert resp.status_code == 302 and resp.location.startswith(f"{ISSUER}/protocol/")
    state = parse_qs(urlsplit(resp.location).query)["state"][0]
    cookie = client.get_cookie(LOGIN_COOKIE_PREFIX + state[:16], domain="localhost", path="/oauth2/")
    pending = PendingLogin.load(app.extensions["portal"].signer.loads(cookie.value))
    assert pending.return_to == "/mlflow/"  # the fragment never reaches a server
    assert forward(client, "/mlflow/ajax-api/x?y=2").status_code == 302


def test_forward_auth_answers_api_clients_401(client: Any) -> None:
    assert forward(client, "/mlflow/api/2.0/mlflow/experiments/search",
                   accept="application/json").status_code == 401
    # A form post is no navigation to a login page either.
    assert forward(client, "/mlflow/x", method="POST").status_code == 401


def test_a_browser_on_another_host_name_goes_to_the_public_one_first(client: Any) -> None:
    resp = forward(client, "/mlflow/?a=1", host="127.0.0.1:8443")
    assert (resp.status_code, resp.location) == (302, f"{PUBLIC}/mlflow/?a=1")


def bearer(realm: Realm, aud: Any = "mlflow", key: RSAKey | None = None,
           **changes: Any) -> dict[str, str]:
    """A token as Keycloak gives the mlflow client (password or client-credentials grant)."""
    claims = {**realm.claims("svc", ["data-scientist"]), "aud": aud, "azp": "mlflow", "typ": "Bearer",
              **changes}
    return {"Authorization": f"Bearer {realm.sign(claims, key)}"}


def test_a_bearer_token_for_mlflow_passes(client: Any, realm: Realm) -> None:
    resp = forward(client, "/mlflow/api/2.0/mlflow/experiments/search", roles="data-scientist",
                   accept="application/json", **bearer(realm, aud=["mlflow", "account"]))
    assert resp.status_code == 200 and resp.headers["X-Forwarded-User"] == "svc"


@pytest.mark.parametrize(("changes", "why"), [
    ({"aud": "account"}, "audience"),
    ({"iss": "https://elsewhere/auth/realms/skiff"}, "iss"),
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"typ": "ID"}, "not an ID or refresh token"),  # an ID token the browser's login left behind
])
def test_a_bearer_token_not_for_us_is_refused(client: Any, realm: Realm, changes: dict[str, Any],
                                              why: str) -> None:
    resp = forward(client, "/mlflow/api/x", accept="application/json", **bearer(realm, **changes))
    assert resp.status_code == 401 and why in resp.json["message"]


def test_a_bearer_token_signed_by_another_key_is_refused(client: Any, realm: Realm) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    resp = forward(client, "/mlflow/api/x", accept="application/json", **bearer(realm, key=stranger))
    assert resp.status_code == 401


def test_a_rotated_key_is_fetched_once_then_used(client: Any, realm: Realm) -> None:
    assert forward(client, "/mlflow/", accept="application/json", **bearer(realm)).status_code == 200
    fetched = realm.jwks_fetches
    realm.key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    realm.published.append(realm.key)
    assert forward(client, "/mlflow/", accept="application/json", **bearer(realm)).status_code == 200
    assert realm.jwks_fetches == fetched + 1


# --- logout ------------------------------------------------------------------------

def logout_token(realm: Realm, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "portal", "iat": now, "exp": now + 60, "jti": "j1",
              "sub": "id-dana", "sid": "sid-dana", "events": {BACKCHANNEL_LOGOUT_EVENT: {}}, **changes}
    return realm.sign({k: v for k, v in claims.items() if v is not None})


def test_backchannel_logout_ends_the_sessions_of_that_keycloak_session(
        client: Any, endpoint: TokenEndpoint, realm: Realm, app: flask.Flask) -> None:
    login(client, endpoint)
    other = app.test_client()
    login(other, endpoint, user="erin")
    assert forward(client, "/mlflow/").status_code == 200
    resp = client.post("/oauth2/backchannel-logout", data={"logout_token": logout_token(realm)})
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    assert forward(client, "/mlflow/", accept="application/json").status_code == 401
    assert forward(other, "/mlflow/").status_code == 200  # erin's session is another sid


@pytest.mark.parametrize("changes", [
    {"events": None}, {"aud": "jupyterhub"}, {"nonce": "n"}, {"sid": None, "sub": None},
    {"iss": "https://elsewhere"}, {"iat": None},
])
def test_an_invalid_logout_token_is_refused_and_ends_nothing(
        client: Any, endpoint: TokenEndpoint, realm: Realm, changes: dict[str, Any]) -> None:
    login(client, endpoint)
    resp = client.post("/oauth2/backchannel-logout", data={"logout_token": logout_token(realm, **changes)})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"
    assert forward(client, "/mlflow/").status_code == 200


def test_logout_ends_the_session_and_keycloaks(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    resp = client.get("/oauth2/logout", base_url=PUBLIC)
    assert resp.status_code == 302
    url = urlsplit(resp.location)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{ISSUER}/protocol/openid-connect/logout"
    q = parse_qs(url.query)
    assert q["post_logout_redirect_uri"] == [f"{PUBLIC}/"] and q["client_id"] == ["portal"]
    assert q["id_token_hint"][0].count(".") == 2
    assert client.get("/oauth2/me", base_url=PUBLIC).status_code == 401


# --- sessions ------------------------------------------------------------------------

def test_sessions_end_when_idle_or_too_old(tmp_path: Path) -> None:
    now = [1000.0]
    store = SessionStore(tmp_path / "s.db", "secret", idle=600, max_age=3600, clock=lambda: now[0])
    token = store.create(Identity(sub="u", username="u", sid="s"))
    for _ in range(6):  # used every 9 minutes: idle never reached
        now[0] += 540
        assert store.get(token) is not None
    now[0] += 540  # 3780 s after login: past the maximum
    assert store.get(token) is None
    quiet = store.create(Identity(sub="u", username="u"))
    now[0] += 601
    assert store.get(quiet) is None


def test_the_database_holds_no_usable_cookie(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.db", "secret", idle=600, max_age=3600)
    token = store.create(Identity(sub="u", username="u"))
    assert token.encode() not in (tmp_path / "s.db").read_bytes()
    assert (tmp_path / "s.db").stat().st_mode & 0o077 == 0


def test_dev_extras_pin_what_the_serving_image_pins() -> None:
    root = Path(__file__).resolve().parents[2]
    image = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (root / "docker/serving/requirements.txt")
                            .read_text(), re.M))
    dev = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', (root / "pyproject.toml").read_text()))
    for package in ("flask", "Authlib", "joserfc"):
        assert dev.get(package) == image.get(package), package
