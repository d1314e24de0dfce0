"""The portal's Flask application: ``create_app(config)``.

Routes (Traefik sends ``/`` and ``/oauth2/`` here):

- ``/``: the landing page (login required): services, their health, who you are.
- ``/oauth2/start?rd=PATH``: log in, then go to PATH.
- ``/oauth2/callback``: Keycloak sends the browser back here with a code.
- ``/oauth2/logout``: end this session and Keycloak's, come back to ``/``.
- ``/oauth2/backchannel-logout``: Keycloak's server-to-server logout (logout_token).
- ``/oauth2/auth?roles=a,b``: Traefik's forward-auth check (MLflow, the dashboard).
- ``/oauth2/auth?bearer=1``: forward-auth for APIs that check bearer tokens themselves
  (the notification service): a browser session becomes ``Authorization: Bearer``
  with the session's fresh access token; a client's own valid bearer token passes.
- ``/oauth2/me``: the signed-in identity as JSON.
- ``/projects``, ``/runs``, ``/models`` and below: the console (serving/portal/console.py).
- ``/healthz``: open.

Each session keeps its Keycloak access and refresh tokens (encrypted, sessions.py);
an access token about to expire is refreshed on use, and a refresh Keycloak refuses
ends the session (the user logs in again).

Unauthenticated browsers (a GET accepting text/html) are sent to Keycloak's
login; everything else gets 401 JSON. A signed-in user without an allowed role
gets 403.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Flask, Response, g, jsonify, redirect, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from serving.portal import catalog, console, pages
from serving.portal.apis import NOTIFICATIONS, Apis, NotFound, Unavailable
from serving.portal.config import PLATFORM_ROLES, Config
from serving.portal.oidc import (
    Keycloak,
    KeycloakUnavailable,
    LoginError,
    PendingLogin,
    RefreshRefused,
    identity,
)
from serving.portal.services import catalogue, statuses
from serving.portal.sessions import Identity, SessionStore
from serving.portal.tokens import InvalidToken, Jwks, Verifier
from serving.realm_tokens import ACCESS_TOKEN

log = logging.getLogger("serving.portal")

SESSION_COOKIE = "skiff_session"
LOGIN_COOKIE_PREFIX = "skiff_login_"
LOGIN_MAX_AGE = 600
# The headers Traefik copies from our 200 into the request it forwards
# (authResponseHeaders in compose/traefik/dynamic/routes.yml).
IDENTITY_HEADERS = ("X-Forwarded-User", "X-Auth-Request-User", "X-Auth-Request-Email",
                    "X-Auth-Request-Roles", "X-Auth-Request-Groups")
# An access token with less life left than this is refreshed before it is used or
# handed on (the request it rides on must not outlive it).
REFRESH_MARGIN = 30.0
# How many projects and runs the landing page lists.
LANDING_ROWS = 10


class Portal:
    """What the views share: one per app (per gunicorn worker)."""

    def __init__(self, config: Config, keycloak: Keycloak, verifier: Verifier,
                 store: SessionStore, apis: Apis,
                 health_client: Callable[[], httpx.Client] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.keycloak = keycloak
        self.verifier = verifier
        self.store = store
        self.apis = apis
        self.health_client = health_client
        self.clock = clock
        self.signer = URLSafeTimedSerializer(config.cookie_secret, salt="skiff-portal-login")
        self.secure_cookies = config.public_url.startswith("https://")


def create_app(config: Config | None = None, *, keycloak: Keycloak | None = None,
               verifier: Verifier | None = None,
               health_client: Callable[[], httpx.Client] | None = None,
               api_transport: httpx.BaseTransport | None = None,
               clock: Callable[[], float] = time.time) -> Flask:
    config = config or Config.from_env()
    if not logging.getLogger().handlers:
        # Under gunicorn: logins and logouts go to its stderr (the service's log).
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    verifier = verifier or Verifier(Jwks(config.jwks_uri), config.issuer)
    keycloak = keycloak or Keycloak(config, verifier)
    store = SessionStore(config.session_db, config.cookie_secret,
                         idle=config.session_idle_seconds, max_age=config.session_max_seconds)
    apis = Apis(config.upstreams, transport=api_transport)
    portal = Portal(config, keycloak, verifier, store, apis, health_client, clock)

    app = Flask(__name__)
    app.config["SECRET_KEY"] = config.cookie_secret
    app.extensions["portal"] = portal

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.errorhandler(KeycloakUnavailable)
    def keycloak_down(exc: KeycloakUnavailable) -> Any:
        log.warning("session refresh: %s", exc)
        if wants_html(forwarded=request.path == "/oauth2/auth"):
            return error_page(503, "Keycloak unavailable",
                              "Your session could not be renewed just now; try again shortly.")
        return api_error(503, "keycloak_unavailable", str(exc))

    @app.get("/")
    def landing() -> Any:
        session = signed_in(portal)
        if session is None:
            return unauthenticated(portal, return_to="/")
        who = session.who
        roles = set(who.roles)
        rows = statuses(catalogue(config.realm), config.public_url, config.upstreams, roles,
                        timeout=config.health_timeout, client_factory=portal.health_client)
        body = pages.landing(who, rows, platform_roles(who), logout_url="/oauth2/logout",
                             extra=landing_sections(portal, session))
        return console.html_response(body)

    console.register(app, apis, lambda: signed_in(portal),
                     lambda: unauthenticated(portal, return_to=request.full_path.rstrip("?")))

    @app.get("/oauth2/start")
    def start() -> Any:
        return login_redirect(portal, safe_return(config, request.args.get("rd", "/")))

    @app.get("/oauth2/callback")
    def callback() -> Any:
        if request.args.get("error"):
            why = request.args.get("error_description") or request.args["error"]
            return error_page(400, "Login did not finish", f"Keycloak said: {why}")
        state = request.args.get("state", "")
        cookie_name = LOGIN_COOKIE_PREFIX + state[:16]
        try:
            pending = PendingLogin.load(portal.signer.loads(
                request.cookies.get(cookie_name, ""), max_age=LOGIN_MAX_AGE))
        except (BadSignature, KeyError, TypeError):
            pending = None
        if pending is None or pending.state != state or not request.args.get("code"):
            return error_page(400, "Login expired",
                              "This login link is not this browser's, or took more than 10 minutes.")
        try:
            who, tokens = portal.keycloak.finish(request.args["code"], pending)
        except LoginError as exc:
            log.warning("login failed: %s", exc)
            return error_page(502, "Login failed", str(exc))
        token = portal.store.create(who, tokens)
        log.info("login: %s (roles %s)", who.username, ",".join(platform_roles(who)) or "-")
        catalog.announce_in_background(config.upstreams.get(catalog.UPSTREAM), who.access_token,
                                       who.username)
        resp = redirect(pending.return_to, code=302)
        set_cookie(portal, resp, SESSION_COOKIE, token, path="/")
        resp.delete_cookie(cookie_name, path="/oauth2/", secure=portal.secure_cookies, httponly=True)
        return resp

    @app.get("/oauth2/logout")
    def logout() -> Any:
        token = request.cookies.get(SESSION_COOKIE)
        who = portal.store.get(token)
        portal.store.delete(token)
        if who is not None:
            log.info("logout: %s", who.username)
        # Keycloak ends its session (and, by back-channel, the other clients'),
        # then sends the browser back to "/", which asks for a login again.
        target = portal.keycloak.logout_url(who.id_token if who else None) if who else "/"
        resp = redirect(target, code=302)
        resp.delete_cookie(SESSION_COOKIE, path="/", secure=portal.secure_cookies, httponly=True)
        return resp

    @app.post("/oauth2/backchannel-logout")
    def backchannel_logout() -> Any:
        no_store = {"Cache-Control": "no-store"}
        try:
            claims = portal.verifier.logout_token(request.form.get("logout_token", ""),
                                                  config.client_id)
        except InvalidToken as exc:
            log.warning("back-channel logout refused: %s", exc)
            return jsonify(error="invalid_request", error_description=str(exc)), 400, no_store
        ended = portal.store.end_keycloak_session(claims.get("sid"), claims.get("sub"))
        log.info("back-channel logout: sid %s, %d session(s) ended", claims.get("sid"), ended)
        return "", 200, no_store

    @app.route("/oauth2/auth", methods=["GET", "HEAD", "POST"])
    def forward_auth() -> Any:
        allowed = {r.strip() for r in request.args.get("roles", "").split(",") if r.strip()}
        # bearer=1: the service behind checks the token itself (issuer, azp, its own
        # rules), so any valid token of the realm passes, whatever its audience.
        bearer_mode = request.args.get("bearer") in ("1", "true", "yes")
        bearer = bearer_token()
        access = ""
        if bearer is not None:
            try:
                claims = portal.verifier.verify(
                    bearer, audiences=None if bearer_mode else config.bearer_audiences)
            except InvalidToken as exc:
                return api_error(401, "invalid_token", str(exc))
            if claims.get("typ") != ACCESS_TOKEN:
                return api_error(401, "not_an_access_token",
                                 f"a token of type {claims.get('typ')!r}; send an access token "
                                 f"(typ {ACCESS_TOKEN!r}), not an ID or refresh token")
            who: Identity | None = identity(claims)
            access = bearer
        else:
            session = signed_in(portal)
            who = session.who if session else None
            access = session.access_token if session else ""
        if who is None:
            # In bearer mode too: an EventSource or an <img> gets 401; only a browser
            # navigating there (an image opened full size) is sent to the login.
            return unauthenticated(portal, return_to=forwarded_url(config), forwarded=True)
        if allowed and not allowed & set(who.roles):
            need = " or ".join(sorted(allowed))
            if wants_html(forwarded=True):
                return error_page(403, "Not allowed", f"{who.username} needs the role {need} here.")
            return api_error(403, "forbidden", f"{who.username} needs the role {need}")
        headers = identity_headers(who)
        if bearer_mode:
            headers["Authorization"] = f"Bearer {access}"
            headers["Cache-Control"] = "no-store"
        return "", 200, headers

    @app.get("/oauth2/me")
    def me() -> Any:
        session = signed_in(portal)
        if session is None:
            return api_error(401, "unauthorized", "not signed in")
        who = session.who
        return jsonify(username=who.username, email=who.email, roles=platform_roles(who),
                       groups=list(who.groups), sub=who.sub)

    return app


# --- helpers used by the views ---------------------------------------------------

def signed_in(portal: Portal) -> console.SignedIn | None:
    """This request's session with a fresh access token, or None (no session, or it
    ended: idle, too old, logged out, or Keycloak refused to refresh its token).
    Keycloak unreachable raises KeycloakUnavailable (503): the session is kept."""
    if "skiff_session" in g:
        return g.skiff_session  # type: ignore[no-any-return]
    cookie = request.cookies.get(SESSION_COOKIE)
    who = portal.store.get(cookie)
    tokens = portal.store.tokens(cookie) if who is not None else None
    session = None
    if who is not None and cookie and tokens is None:
        # A session from before tokens were kept (or sealed with an older secret).
        log.info("session of %s holds no tokens: ended, log in again", who.username)
        portal.store.delete(cookie)
    elif who is not None and cookie and tokens is not None:
        if tokens.access_expires - REFRESH_MARGIN <= portal.clock():
            try:
                tokens = portal.keycloak.refresh(tokens)
            except RefreshRefused as exc:
                log.info("session of %s ended: %s", who.username, exc)
                portal.store.delete(cookie)
                tokens = None
            else:
                portal.store.set_tokens(cookie, tokens)
        if tokens is not None:
            session = console.SignedIn(who, tokens.access)
    g.skiff_session = session
    return session


def landing_sections(portal: Portal, session: console.SignedIn) -> str:
    """The landing page's projects and recent runs; a service down is said, not fatal."""
    apis = portal.apis
    who = session.who
    try:
        # The user's own and their teams' projects (the list shows all readable ones).
        mine = [p for p in apis.projects(session.access_token)
                if p.get("owner") == who.username or p.get("team") in who.groups]
        projects = console.projects_table(mine[:LANDING_ROWS])
    except (Unavailable, NotFound) as exc:
        projects = console.unavailable(exc, "SKIFF_CATALOG_URL")
    try:
        runs = console.runs_table(apis.runs(session.access_token, limit=LANDING_ROWS))
    except (Unavailable, NotFound) as exc:
        runs = console.unavailable(exc, NOTIFICATIONS)
    return (f'<h2>Your projects <small><a href="/projects">all</a></small></h2>{projects}'
            f'<h2>Recent runs <small><a href="/runs">all</a></small></h2>{runs}')


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def platform_roles(who: Identity) -> list[str]:
    return [r for r in PLATFORM_ROLES if r in who.roles]


def identity_headers(who: Identity) -> dict[str, str]:
    return dict(zip(IDENTITY_HEADERS, (who.username, who.username, who.email,
                                       ",".join(platform_roles(who)), ",".join(who.groups)),
                    strict=True))


def wants_html(forwarded: bool = False) -> bool:
    """A browser navigation: GET/HEAD accepting HTML (XHRs and API clients get JSON)."""
    method = request.headers.get("X-Forwarded-Method", request.method) if forwarded else request.method
    return method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


def forwarded_url(config: Config) -> str:
    """The URL the browser asked Traefik for (forward-auth passes it in X-Forwarded-*)."""
    proto = request.headers.get("X-Forwarded-Proto", "https")
    host = request.headers.get("X-Forwarded-Host", config.public_host)
    uri = request.headers.get("X-Forwarded-Uri", "/")
    return f"{proto}://{host}{uri}"


def safe_return(config: Config, target: str) -> str:
    """Where to go after login: a path on the public address, never another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        public = urlsplit(config.public_url)
        if (parts.scheme, parts.netloc) != (public.scheme, public.netloc):
            return "/"
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path + (f"?{parts.query}" if parts.query else "")


def unauthenticated(portal: Portal, return_to: str, forwarded: bool = False) -> Any:
    if not wants_html(forwarded):
        resp = api_error(401, "unauthorized",
                         f"log in at {portal.config.public_url}/oauth2/start or send a Keycloak "
                         "bearer token")
        resp.headers["WWW-Authenticate"] = f'Bearer realm="{portal.config.realm}"'
        return resp
    if forwarded:
        # The session cookie lives on the public host; a browser that came by another
        # name (127.0.0.1) goes to the public one first, or it would log in forever.
        asked = urlsplit(return_to)
        if asked.netloc != portal.config.public_host:
            uri = asked.path + (f"?{asked.query}" if asked.query else "")
            return redirect(f"{portal.config.public_url}{uri}", code=302)
    return login_redirect(portal, safe_return(portal.config, return_to))


def login_redirect(portal: Portal, return_to: str) -> BaseResponse:
    url, pending = portal.keycloak.start(return_to)
    resp = redirect(url, code=302)
    # One cookie per login under way (several tabs may log in at once), for the callback only.
    set_cookie(portal, resp, LOGIN_COOKIE_PREFIX + pending.state[:16],
               portal.signer.dumps(pending.dump()), path="/oauth2/", max_age=LOGIN_MAX_AGE)
    return resp


def set_cookie(portal: Portal, resp: BaseResponse, name: str, value: str, path: str,
               max_age: int | None = None) -> None:
    resp.set_cookie(name, value, path=path, max_age=max_age, secure=portal.secure_cookies,
                    httponly=True, samesite="Lax")


def api_error(status: int, code: str, message: str) -> Response:
    resp = jsonify(error=code, message=message)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def error_page(status: int, title: str, message: str) -> Response:
    body = pages.message(title, html.escape(message))
    return Response(body, status=status, mimetype="text/html", headers={"Cache-Control": "no-store"})
