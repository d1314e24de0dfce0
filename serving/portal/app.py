"""The portal's Flask application: ``create_app(config)``.

Routes (Traefik sends ``/`` and ``/oauth2/`` here):

- ``/``: the landing page (login required): services, their health, who you are.
- ``/oauth2/start?rd=PATH``: log in, then go to PATH.
- ``/oauth2/callback``: Keycloak sends the browser back here with a code.
- ``/oauth2/logout``: end this session and Keycloak's, come back to ``/``.
- ``/oauth2/backchannel-logout``: Keycloak's server-to-server logout (logout_token).
- ``/oauth2/auth?roles=a,b``: Traefik's forward-auth check (MLflow, the dashboard).
- ``/oauth2/me``: the signed-in identity as JSON.
- ``/healthz``: open.

Unauthenticated browsers (a GET accepting text/html) are sent to Keycloak's
login; everything else gets 401 JSON. A signed-in user without an allowed role
gets 403.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Flask, Response, jsonify, redirect, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from serving.portal import catalog, pages
from serving.portal.config import PLATFORM_ROLES, Config
from serving.portal.oidc import Keycloak, LoginError, PendingLogin, identity
from serving.portal.services import catalogue, statuses
from serving.portal.sessions import Identity, SessionStore
from serving.portal.tokens import InvalidToken, Jwks, Verifier

log = logging.getLogger("serving.portal")

SESSION_COOKIE = "skiff_session"
LOGIN_COOKIE_PREFIX = "skiff_login_"
LOGIN_MAX_AGE = 600
# The headers Traefik copies from our 200 into the request it forwards
# (authResponseHeaders in compose/traefik/dynamic/routes.yml).
IDENTITY_HEADERS = ("X-Forwarded-User", "X-Auth-Request-User", "X-Auth-Request-Email",
                    "X-Auth-Request-Roles", "X-Auth-Request-Groups")


class Portal:
    """What the views share: one per app (per gunicorn worker)."""

    def __init__(self, config: Config, keycloak: Keycloak, verifier: Verifier,
                 store: SessionStore,
                 health_client: Callable[[], httpx.Client] | None = None) -> None:
        self.config = config
        self.keycloak = keycloak
        self.verifier = verifier
        self.store = store
        self.health_client = health_client
        self.signer = URLSafeTimedSerializer(config.cookie_secret, salt="skiff-portal-login")
        self.secure_cookies = config.public_url.startswith("https://")


def create_app(config: Config | None = None, *, keycloak: Keycloak | None = None,
               verifier: Verifier | None = None,
               health_client: Callable[[], httpx.Client] | None = None) -> Flask:
    config = config or Config.from_env()
    if not logging.getLogger().handlers:
        # Under gunicorn: logins and logouts go to its stderr (the service's log).
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    verifier = verifier or Verifier(Jwks(config.jwks_uri), config.issuer)
    keycloak = keycloak or Keycloak(config, verifier)
    store = SessionStore(config.session_db, config.cookie_secret,
                         idle=config.session_idle_seconds, max_age=config.session_max_seconds)
    portal = Portal(config, keycloak, verifier, store, health_client)

    app = Flask(__name__)
    app.config["SECRET_KEY"] = config.cookie_secret
    app.extensions["portal"] = portal

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/")
    def landing() -> Any:
        who = current_session(portal)
        if who is None:
            return unauthenticated(portal, return_to="/")
        roles = set(who.roles)
        rows = statuses(catalogue(config.realm), config.public_url, config.upstreams, roles,
                        timeout=config.health_timeout, client_factory=portal.health_client)
        body = pages.landing(who, rows, platform_roles(who), logout_url="/oauth2/logout")
        return Response(body, mimetype="text/html", headers={"Cache-Control": "no-store"})

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
            who = portal.keycloak.finish(request.args["code"], pending)
        except LoginError as exc:
            log.warning("login failed: %s", exc)
            return error_page(502, "Login failed", str(exc))
        token = portal.store.create(who)
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
        bearer = bearer_token()
        if bearer is not None:
            try:
                claims = portal.verifier.verify(bearer, audiences=config.bearer_audiences)
            except InvalidToken as exc:
                return api_error(401, "invalid_token", str(exc))
            who: Identity | None = identity(claims)
        else:
            who = current_session(portal)
        if who is None:
            return unauthenticated(portal, return_to=forwarded_url(config), forwarded=True)
        if allowed and not allowed & set(who.roles):
            need = " or ".join(sorted(allowed))
            if wants_html(forwarded=True):
                return error_page(403, "Not allowed", f"{who.username} needs the role {need} here.")
            return api_error(403, "forbidden", f"{who.username} needs the role {need}")
        return "", 200, identity_headers(who)

    @app.get("/oauth2/me")
    def me() -> Any:
        who = current_session(portal)
        if who is None:
            return api_error(401, "unauthorized", "not signed in")
        return jsonify(username=who.username, email=who.email, roles=platform_roles(who),
                       groups=list(who.groups), sub=who.sub)

    return app


# --- helpers used by the views ---------------------------------------------------

def current_session(portal: Portal) -> Identity | None:
    return portal.store.get(request.cookies.get(SESSION_COOKIE))


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
