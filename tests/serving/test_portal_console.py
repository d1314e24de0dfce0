"""The portal's kept tokens, its bearer forward-auth mode and the console's pages,
without Keycloak or the services: the fake realm and token endpoint of
test_portal.py, and the catalog, notification service and MLflow played by an
httpx MockTransport that also records which token each call carried.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest

from serving.portal import charts, console
from serving.portal.app import SESSION_COOKIE, create_app
from serving.portal.config import Config
from serving.portal.oidc import Keycloak
from serving.portal.sessions import Identity, SessionStore, Tokens
from serving.portal.static import CONSOLE_JS
from serving.portal.tokens import Jwks, Verifier
from tests.serving.test_portal import (
    BROWSER,
    INTERNAL,
    ISSUER,
    PUBLIC,
    Realm,
    TokenEndpoint,
    bearer,
    forward,
    health,
    login,
)

pytestmark = pytest.mark.unit

CATALOG = "http://catalog.test:8400"
NOTIFY = "http://notify.test:8410"
MLFLOW = "http://mlflow.test:5000"
RUN = "bracelet_training/manual__2026-11-23T10:00:00+00:00"

EVENTS = [
    {"seq": 1, "id": "e1", "time": "2026-11-23T10:00:01Z", "kind": "status", "run": RUN, "step": "",
     "title": "started", "data": {"state": "running", "message": "go"}, "link": None},
    {"seq": 2, "id": "e2", "time": "2026-11-23T10:00:02Z", "kind": "log", "run": RUN, "step": "train",
     "title": "", "data": {"text": "<script>alert(1)</script> epoch 1"}, "link": None},
    {"seq": 3, "id": "e3", "time": "2026-11-23T10:00:03Z", "kind": "metrics", "run": RUN, "step": "train",
     "title": "progress", "data": {"values": {"auc": 0.81}, "step": 10}, "link": None},
    {"seq": 4, "id": "e4", "time": "2026-11-23T10:00:04Z", "kind": "image", "run": RUN, "step": "train",
     "title": "curve", "data": None,
     "link": {"url": "s3://events/e4.png", "content_type": "image/png", "size": 10, "name": "curve.png"}},
    {"seq": 5, "id": "e5", "time": "2026-11-23T10:00:05Z", "kind": "file", "run": RUN, "step": "train",
     "title": "model", "data": None,
     "link": {"url": "s3://events/e5", "content_type": "text/csv", "size": 99, "name": "scores.csv"}},
    {"seq": 6, "id": "e6", "time": "2026-11-23T10:00:06Z", "kind": "html", "run": RUN, "step": "",
     "title": "summary", "data": {"html": "<b onclick=\"x()\">done</b>"}, "link": None},
    {"seq": 7, "id": "e7", "time": "2026-11-23T10:00:07Z", "kind": "alert", "run": RUN, "step": "",
     "title": "drift", "data": {"severity": "critical", "message": "chol drifted",
                                "details": {"psi": 0.4}}, "link": None},
]
RUNS = [{"run": RUN, "user": "dana", "workflow": "bracelet_training", "status": "success",
         "first_time": "2026-11-23T10:00:01Z", "last_time": "2026-11-23T10:00:07Z"}]
PROJECTS = [{"name": "heart<1>", "description": "the bracelet", "owner": "dana", "team": "cardiology",
             "access": "team"},
            {"name": "others-public", "description": "", "owner": "erin", "team": "nephrology",
             "access": "public"}]


def monitoring_run(day: int, psi_chol: float, p_chol: float, accuracy: float) -> dict[str, Any]:
    at = 1795000000000 + day * 86400000
    metrics = {"drift.psi.chol": psi_chol, "drift.p.chol": p_chol, "drift.psi.age": 0.05,
               "drift.p.age": 0.5, "drift.alert": float(psi_chol >= 0.2), "live.accuracy": accuracy,
               "live.roc_auc": accuracy + 0.05}
    return {"info": {"run_id": f"r{day}"},
            "data": {"metrics": [{"key": k, "value": v, "timestamp": at, "step": 0}
                                 for k, v in metrics.items()]}}


class Services:
    """The catalog, the notification service and MLflow as the console sees them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.notifications_up = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.calls.append((url, request.headers.get("Authorization")))
        path = request.url.path
        if url.startswith(CATALOG):
            if path == "/api/v1/projects":
                return httpx.Response(200, json={"projects": PROJECTS})
            if path == "/api/v1/projects/heart<1>":
                return httpx.Response(200, json={**PROJECTS[0], "assets": [
                    {"kind": "dataset", "name": "uci-heart", "description": "raw", "owner": "dana",
                     "location": "s3://dana/heart.csv", "latest_version": 2}]})
            return httpx.Response(404, json={"error": "not_found"})
        if url.startswith(NOTIFY):
            if not self.notifications_up:
                raise httpx.ConnectError("connection refused")
            if path == "/api/v1/runs":
                return httpx.Response(200, json={"runs": RUNS})
            if path == f"/api/v1/runs/{RUN}/events":
                return httpx.Response(200, json={"events": EVENTS})
            return httpx.Response(404, json={"error": "not_found"})
        if url.startswith(MLFLOW):
            return self.mlflow(request)
        raise AssertionError(f"unexpected call {url}")

    def mlflow(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/mlflow/api/2.0/mlflow")
        model = {"name": "bracelet", "aliases": [{"alias": "champion", "version": "3"}],
                 "latest_versions": [{"version": "4"}]}
        if path == "/registered-models/search":
            return httpx.Response(200, json={"registered_models": [model]})
        if path == "/registered-models/get" and request.url.params["name"] == "bracelet":
            return httpx.Response(200, json={"registered_model": model})
        if path == "/model-versions/get":
            return httpx.Response(200, json={"model_version": {
                "name": "bracelet", "version": "3", "run_id": "abc", "status": "READY",
                "tags": [{"key": "skiff.monitoring.drifted", "value": "chol"}]}})
        if path == "/experiments/get-by-name":
            return httpx.Response(200, json={"experiment": {"experiment_id": "7"}})
        if path == "/runs/search":
            body = json.loads(request.content)
            assert body["experiment_ids"] == ["7"]
            assert body["filter"] == ("tags.`skiff.model.name` = 'bracelet' and "
                                      "tags.`skiff.model.alias` = 'champion'")
            # Newest first, as asked (order_by start_time DESC).
            return httpx.Response(200, json={"runs": [monitoring_run(2, 0.45, 1e-6, 0.61),
                                                      monitoring_run(1, 0.10, 0.3, 0.80)]})
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST"})


@pytest.fixture
def realm() -> Realm:
    return Realm()


@pytest.fixture
def endpoint(realm: Realm) -> TokenEndpoint:
    return TokenEndpoint(realm)


@pytest.fixture
def services() -> Services:
    return Services()


def make_config(tmp_path: Path, notifications: bool = True) -> Config:
    env = {
        "PORTAL_PUBLIC_URL": PUBLIC, "KEYCLOAK_ISSUER": ISSUER, "KEYCLOAK_INTERNAL_URL": INTERNAL,
        "KEYCLOAK_REALM": "skiff", "PORTAL_CLIENT_SECRET": "client-secret",
        "PORTAL_COOKIE_SECRET": "cookie-secret", "PORTAL_SESSION_DB": str(tmp_path / "sessions.db"),
        "SKIFF_MLFLOW_URL": MLFLOW, "SKIFF_CATALOG_URL": CATALOG,
    }
    if notifications:
        env["SKIFF_NOTIFICATIONS_URL"] = NOTIFY
    return Config.from_env(env)


def make_app(config: Config, realm: Realm, endpoint: TokenEndpoint, services: Services,
             clock: list[float] | None = None) -> flask.Flask:
    verifier = Verifier(Jwks(config.jwks_uri, fetch=realm.jwks, refresh_floor=0), config.issuer)
    extra: dict[str, Any] = {"clock": (lambda: clock[0])} if clock is not None else {}
    return create_app(config, verifier=verifier, keycloak=Keycloak(config, verifier, adapter=endpoint),
                      health_client=lambda: httpx.Client(transport=httpx.MockTransport(health)),
                      api_transport=httpx.MockTransport(services), **extra)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def app(config: Config, realm: Realm, endpoint: TokenEndpoint, services: Services) -> flask.Flask:
    return make_app(config, realm, endpoint, services)


@pytest.fixture
def client(app: flask.Flask) -> Any:
    return app.test_client()


def page(client: Any, path: str) -> tuple[int, str, Any]:
    resp = client.get(path, headers=BROWSER, base_url=PUBLIC)
    return resp.status_code, resp.get_data(as_text=True), resp.headers


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the token was checked where it was used)."""
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "===")))


# --- tokens kept with the session ----------------------------------------------------

def test_the_sessions_tokens_are_kept_encrypted(client: Any, endpoint: TokenEndpoint,
                                                config: Config, app: flask.Flask) -> None:
    login(client, endpoint)
    store: SessionStore = app.extensions["portal"].store
    cookie = client.get_cookie(SESSION_COOKIE, domain="localhost").value
    tokens = store.tokens(cookie)
    assert tokens is not None and tokens.refresh.startswith("refresh-dana-")
    wal = Path(f"{config.session_db}-wal")
    raw = config.session_db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert tokens.access.encode() not in raw and tokens.refresh.encode() not in raw
    # Another cookie secret (it was rotated) cannot open them: the session holds none.
    other = SessionStore(config.session_db, "another-secret", idle=600, max_age=3600)
    assert other.tokens(cookie) is None


def test_a_database_from_before_tokens_gets_the_column(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, sid TEXT, sub TEXT NOT NULL,"
                     " username TEXT NOT NULL, email TEXT NOT NULL DEFAULT '', roles TEXT NOT NULL"
                     " DEFAULT '[]', groups TEXT NOT NULL DEFAULT '[]', id_token TEXT NOT NULL"
                     " DEFAULT '', created REAL NOT NULL, last_seen REAL NOT NULL, expires REAL NOT NULL)")
    store = SessionStore(db, "s", idle=600, max_age=3600)
    token = store.create(Identity(sub="u", username="u"), Tokens("a", "r", 1.0, 2.0))
    assert store.tokens(token) == Tokens("a", "r", 1.0, 2.0)


def test_an_old_session_without_tokens_is_ended(client: Any, app: flask.Flask) -> None:
    store: SessionStore = app.extensions["portal"].store
    token = store.create(Identity(sub="u", username="old"))
    client.set_cookie(SESSION_COOKIE, token, domain="localhost")
    assert client.get("/oauth2/me", base_url=PUBLIC).status_code == 401
    assert store.get(token) is None


def test_an_expiring_access_token_is_refreshed(tmp_path: Path, realm: Realm, endpoint: TokenEndpoint,
                                               services: Services) -> None:
    now = [time.time()]
    client = make_app(make_config(tmp_path), realm, endpoint, services, clock=now).test_client()
    login(client, endpoint)
    given = forward_bearer(client).headers["Authorization"]
    assert len(endpoint.requests) == 1  # fresh: no refresh yet
    now[0] += 280  # 20 s left of the access token's 300: less than the margin
    renewed = forward_bearer(client)
    assert renewed.status_code == 200 and renewed.headers["Authorization"] != given
    grant = endpoint.requests[-1]
    assert grant["grant_type"] == ["refresh_token"] and grant["refresh_token"][0].startswith("refresh-")
    now[0] -= 280  # (the fake clock back in step with the renewed token's exp)
    assert forward_bearer(client).headers["Authorization"] == renewed.headers["Authorization"]
    assert len(endpoint.requests) == 2  # refreshed once, then reused


def test_a_refused_refresh_ends_the_session(tmp_path: Path, realm: Realm, endpoint: TokenEndpoint,
                                            services: Services) -> None:
    now = [time.time()]
    app = make_app(make_config(tmp_path), realm, endpoint, services, clock=now)
    client = app.test_client()
    login(client, endpoint)
    endpoint.refresh_tokens.clear()  # Keycloak's session is gone (idle, revoked, admin logout)
    now[0] += 290
    assert client.get("/oauth2/me", base_url=PUBLIC).status_code == 401
    assert app.extensions["portal"].store.count() == 0
    assert forward_bearer(client).status_code == 401


def test_keycloak_down_during_a_refresh_keeps_the_session(tmp_path: Path, realm: Realm,
                                                          endpoint: TokenEndpoint,
                                                          services: Services) -> None:
    now = [time.time()]
    client = make_app(make_config(tmp_path), realm, endpoint, services, clock=now).test_client()
    login(client, endpoint)
    endpoint.down = True
    now[0] += 600
    resp = client.get("/oauth2/me", base_url=PUBLIC)
    assert resp.status_code == 503 and resp.json["error"] == "keycloak_unavailable"
    endpoint.down = False
    assert client.get("/oauth2/me", base_url=PUBLIC).status_code == 200


# --- forward-auth, bearer mode ---------------------------------------------------------

def forward_bearer(client: Any, accept: str = "text/event-stream", **headers: str) -> Any:
    return client.get("/oauth2/auth", query_string={"bearer": "1"}, base_url=PUBLIC,
                      headers={"Accept": accept, "X-Forwarded-Method": "GET",
                               "X-Forwarded-Proto": "https", "X-Forwarded-Host": "localhost:8443",
                               "X-Forwarded-Uri": "/events/api/v1/runs", **headers})


def test_bearer_mode_turns_a_session_into_a_bearer_token(client: Any, endpoint: TokenEndpoint,
                                                         app: flask.Flask) -> None:
    login(client, endpoint, roles=["data-scientist"])
    resp = forward_bearer(client)
    assert resp.status_code == 200
    scheme, _, token = resp.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = app.extensions["portal"].verifier.verify(token)
    assert claims["preferred_username"] == "dana" and claims["azp"] == "portal"
    assert resp.headers["X-Forwarded-User"] == "dana"
    assert resp.headers["X-Auth-Request-Roles"] == "data-scientist"
    assert resp.headers["Cache-Control"] == "no-store"


def test_bearer_mode_passes_a_clients_own_token_through(client: Any, realm: Realm) -> None:
    # Any client of the realm (the service checks azp itself), any audience.
    sent = bearer(realm, aud="account", azp="jupyterhub")
    resp = forward_bearer(client, accept="application/json", **sent)
    assert resp.status_code == 200
    assert resp.headers["Authorization"] == sent["Authorization"]
    assert resp.headers["X-Forwarded-User"] == "svc"


def test_bearer_mode_refuses_a_bad_token_and_no_session(client: Any, realm: Realm) -> None:
    expired = bearer(realm, exp=1)
    resp = forward_bearer(client, accept="application/json", **expired)
    assert resp.status_code == 401 and resp.json["error"] == "invalid_token"
    assert "Authorization" not in resp.headers
    # An EventSource without session: 401, not a login page.
    assert forward_bearer(client).status_code == 401


def test_the_mlflow_mode_still_hands_out_no_token(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    resp = forward(client, "/mlflow/")
    assert resp.status_code == 200 and "Authorization" not in resp.headers


# --- pages -------------------------------------------------------------------------------

def test_the_landing_page_lists_projects_and_recent_runs(client: Any, endpoint: TokenEndpoint,
                                                         services: Services) -> None:
    login(client, endpoint)
    status, body, headers = page(client, "/")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert 'href="/projects/heart%3C1%3E">heart&lt;1&gt;</a>' in body
    assert "others-public" not in body  # readable, but neither dana's nor her team's
    assert f'href="/runs/{RUN.replace(":", "%3A").replace("+", "%2B")}"' in body
    for link in ('href="/projects"', 'href="/runs"', 'href="/models"'):
        assert link in body
    # Every call went out with dana's access token.
    tokens = {auth for url, auth in services.calls if not url.startswith(MLFLOW)}
    [auth] = tokens
    assert auth is not None and claims_of(auth.split()[1])["preferred_username"] == "dana"


@pytest.mark.parametrize(("roles", "shown"), [(["data-engineer"], True), (["admin"], True),
                                              (["data-scientist"], False)])
def test_prometheus_is_listed_for_operators(client: Any, endpoint: TokenEndpoint, roles: list[str],
                                            shown: bool) -> None:
    login(client, endpoint, roles=roles)
    _, body, _ = page(client, "/")
    assert (f"{PUBLIC}/prometheus/" in body) == shown
    assert f"{PUBLIC}/events/api/v1/runs" in body and f"{PUBLIC}/catalog/api/v1/projects" in body


def test_pages_without_a_session_send_the_browser_to_login(client: Any) -> None:
    for path in ("/projects", "/runs", f"/runs/{RUN}", "/models", "/models/bracelet"):
        resp = client.get(path, headers=BROWSER, base_url=PUBLIC)
        assert resp.status_code == 302 and resp.location.startswith(ISSUER), path
    assert client.get("/runs", headers={"Accept": "application/json"},
                      base_url=PUBLIC).status_code == 401


def test_projects_and_a_project(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    status, body, _ = page(client, "/projects")
    assert status == 200 and 'id="projects"' in body and "cardiology" in body
    assert "others-public" in body
    status, body, _ = page(client, "/projects/heart%3C1%3E")
    assert status == 200 and "uci-heart" in body and "s3://dana/heart.csv" in body
    status, body, _ = page(client, "/projects/nope")
    assert status == 404 and "no project nope" in body


def test_a_run_page_renders_each_kind_and_follows_the_stream(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    status, body, headers = page(client, f"/runs/{RUN}")
    assert status == 200
    assert '<script src="/static/console.js" defer></script>' in body
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; epoch 1" in body
    assert re.search(r'<section id="events" data-stream="/events/api/v1/runs/bracelet_training/'
                     r'manual__2026-11-23T10%3A00%3A00%2B00%3A00/stream" data-after="7"', body)
    assert '<a href="/events/api/v1/events/e4/content" target="_blank" rel="noopener">' \
           '<img src="/events/api/v1/events/e4/content" alt="curve"></a>' in body
    assert 'download="scores.csv">scores.csv</a>' in body
    assert '<iframe sandbox="" srcdoc="&lt;b onclick=&quot;x()&quot;&gt;done&lt;/b&gt;">' in body
    assert '<span class="badge running">running</span> go' in body
    assert '<span class="badge critical">critical</span> chol drifted' in body
    assert "<code>auc</code></td><td>0.81</td>" in body and "step 10" in body
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_the_runs_page_follows_every_visible_event(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    status, body, _ = page(client, "/runs")
    assert status == 200 and '<script src="/static/console.js" defer></script>' in body
    assert '<table id="runs" data-stream="/events/api/v1/stream">' in body
    assert f'<tr data-run="{RUN}">' in body and '<span class="badge success">success</span>' in body
    # The landing page's short list stays as it was loaded.
    _, landing, _ = page(client, "/")
    assert '<table id="runs">' in landing and "console.js" not in landing


def test_a_run_without_events_yet_waits_for_them(client: Any, endpoint: TokenEndpoint) -> None:
    # The service answers 404 alike for a run with no event yet and one the user may not
    # see: the page follows the run's stream, which shows its events only to its readers.
    login(client, endpoint)
    status, body, _ = page(client, "/runs/someone/else")
    assert status == 200 and '<p id="no-events">' in body
    assert 'data-stream="/events/api/v1/runs/someone/else/stream"' in body
    assert "console.js" in body


def test_the_console_says_when_the_notification_service_is_unavailable(
        tmp_path: Path, realm: Realm, endpoint: TokenEndpoint, services: Services) -> None:
    absent = make_app(make_config(tmp_path, notifications=False), realm, endpoint, services).test_client()
    login(absent, endpoint)
    for path in ("/", "/runs", f"/runs/{RUN}"):
        status, body, _ = page(absent, path)
        assert status == 200 and "notifications service unavailable" in body, path
        assert "console.js" not in body  # no stream to follow
    _, body, _ = page(absent, "/")
    assert "heart&lt;1&gt;" in body  # the rest of the page is there

    down = make_app(make_config(tmp_path / "b"), realm, endpoint, services).test_client()
    login(down, endpoint)
    services.notifications_up = False
    status, body, _ = page(down, "/runs")
    assert status == 200 and "notifications service unavailable: ConnectError" in body


def test_models_show_the_champion_and_monitoring_charts(client: Any, endpoint: TokenEndpoint) -> None:
    login(client, endpoint)
    status, body, _ = page(client, "/models")
    assert status == 200 and 'href="/models/bracelet"' in body and "champion→3" in body
    status, body, _ = page(client, "/models/bracelet")
    assert status == 200
    assert re.search(r'id="champion">Champion: version <strong>3</strong>', body)
    assert "skiff.monitoring.drifted" in body
    for chart in ("chart-psi", "chart-drifted", "chart-quality"):
        svg = re.search(rf'<svg [^>]*id="{chart}">.*?</svg>', body, re.S)
        assert svg, chart
    psi = re.search(r'id="chart-psi">.*?</svg>', body, re.S).group(0)  # type: ignore[union-attr]
    assert psi.count("<circle") == 2 and "max PSI" in psi and 'class="threshold"' in psi
    quality = re.search(r'id="chart-quality">.*?</svg>', body, re.S).group(0)  # type: ignore[union-attr]
    assert quality.count("<circle") == 4
    status, _, _ = page(client, "/models/unknown")
    assert status == 404


def test_the_script_is_served_as_a_file(client: Any) -> None:
    resp = client.get("/static/console.js", base_url=PUBLIC)
    assert resp.status_code == 200 and resp.mimetype == "text/javascript"
    assert "new EventSource" in resp.get_data(as_text=True)
    assert "innerHTML" not in CONSOLE_JS


# --- the pieces -----------------------------------------------------------------------------

def test_drifted_features_are_counted_by_the_monitoring_rule() -> None:
    series = console.monitoring_series([monitoring_run(1, 0.10, 0.3, 0.8),
                                        monitoring_run(2, 0.45, 1e-6, 0.6),
                                        # PSI high but p not below 0.01 / 2 features: not drifted.
                                        monitoring_run(3, 0.45, 0.009, 0.7)])
    assert [v for _, v in series["drifted"]] == [0.0, 1.0, 0.0]
    assert [v for _, v in series["max_psi"]] == [0.10, 0.45, 0.45]
    assert [v for _, v in series["accuracy"]] == [0.8, 0.6, 0.7]


def test_the_console_uses_the_monitoring_names() -> None:
    from skiff.monitoring import drift, results

    assert (console.MONITORING_EXPERIMENT, console.TAG_MODEL, console.TAG_VERSION, console.TAG_ALIAS) == \
        (results.EXPERIMENT, results.TAG_MODEL, results.TAG_VERSION, results.TAG_ALIAS)
    assert (console.PSI_ALERT, console.P_ALERT) == (drift.PSI_ALERT, drift.P_ALERT)


def test_a_chart_without_points_says_so_and_escapes_its_title() -> None:
    svg = charts.line_chart("<b>AUC</b>", [("auc", [])])
    assert "no data yet" in svg and "&lt;b&gt;AUC&lt;/b&gt;" in svg and "<b>" not in svg
    one = charts.line_chart("x", [("a", [(1000.0, 0.5)])])
    assert one.count("<circle") == 1 and "<polyline" not in one
