"""MLflow's own authorization by the platform's roles: an MLflow app (``mlflow server --app-name skiff``).

MLflow has no login of its own here; Traefik lets only signed-in people through
and hands MLflow their access token (the portal's forward-auth, bearer mode). This
app checks, in MLflow's process, before any of MLflow's routes runs:

- With a bearer token: it must be an access token of the realm from one of the
  platform's clients (serving.realm_tokens). Roles admin, data-engineer and
  data-scientist, and the platform's service account, may do anything; citizen and
  viewer may read only (403 for any change).
- Without a token, which only a caller inside the platform's network can send:
  reading, tracking runs and registering new versions (what notebooks and pipeline
  nodes do), but none of the changes that decide what is served or kept: moving or
  deleting an alias, changing a stage, deleting, renaming or tagging registered
  models and versions (401: those need the token of a person with such a role, or
  of the platform).

Requests are classified by method and path (:func:`action`), the same for MLflow's
REST API (``/api/``) and the UI's (``/ajax-api/``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from serving.realm_tokens import RealmTokens, TokenRejected

READ, TRACK, REGISTER, GOVERN = "read", "track", "register", "govern"
WRITER_ROLES = frozenset({"admin", "data-engineer", "data-scientist"})
DEFAULT_CLIENTS = ("portal", "jupyterhub", "airflow", "mlflow")
DEFAULT_SERVICE_USERS = ("service-account-airflow",)
# POSTs that only read (MLflow searches with POST bodies).
READ_POSTS = re.compile(r"/(search|get-latest-versions|batch-get|[a-z-]*get[a-z-]*)$")
REGISTRY = re.compile(r"/mlflow/(registered-models|model-versions)/")
# Creating a registered model or a version: what log_model(registered_model_name=...) does.
CREATES = re.compile(r"/mlflow/(registered-models|model-versions)/create$")


def action(method: str, path: str) -> str:
    """What a request does: READ, TRACK (runs, experiments, artifacts), REGISTER or GOVERN."""
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return READ
    if method == "POST" and READ_POSTS.search(path):
        return READ
    if REGISTRY.search(path):
        return REGISTER if CREATES.search(path) else GOVERN
    return TRACK


def decide(act: str, roles: frozenset[str] | None, service: bool = False) -> tuple[int, str] | None:
    """None when allowed; else (status, reason). ``roles`` None: no token was sent."""
    if roles is None:
        if act == GOVERN:
            return 401, ("moving an alias, changing a stage, deleting, renaming or tagging a "
                         "registered model needs a Keycloak access token of role "
                         f"{', '.join(sorted(WRITER_ROLES))} (Authorization: Bearer ...)")
        return None
    if act == READ or service or roles & WRITER_ROLES:
        return None
    return 403, (f"your roles ({', '.join(sorted(roles)) or 'none'}) may read MLflow, not change "
                 f"it: that needs {', '.join(sorted(WRITER_ROLES))}")


class Gate:
    """Checks one request's Authorization header against the realm and the rules."""

    def __init__(self, environ: Any = os.environ) -> None:
        missing = [k for k in ("AUTH_ISSUER", "AUTH_JWKS_URL") if not environ.get(k)]
        if missing:
            raise RuntimeError(f"skiff MLflow app: {', '.join(missing)} not set")
        self.realm = RealmTokens(environ["AUTH_ISSUER"], environ["AUTH_JWKS_URL"])
        self.clients = tuple(c for c in environ.get("AUTH_CLIENTS", "").split(",") if c) or DEFAULT_CLIENTS
        self.service_users = tuple(
            u for u in environ.get("AUTH_SERVICE_USERS", "").split(",") if u) or DEFAULT_SERVICE_USERS

    def refusal(self, method: str, path: str, header: str | None) -> tuple[int, dict[str, str]] | None:
        """None when the request may go on; else MLflow's error status and body."""
        act = action(method, path)
        roles: frozenset[str] | None = None
        service = False
        if header:
            try:
                user, claims = self.realm.user(header, self.clients, api="MLflow")
            except TokenRejected as exc:
                return exc.status, error_body(exc.status, exc.message)
            roles = frozenset((claims.get("realm_access") or {}).get("roles") or ())
            service = user in self.service_users
        refused = decide(act, roles, service)
        if refused is None:
            return None
        return refused[0], error_body(*refused)


def error_body(status: int, message: str) -> dict[str, str]:
    # MLflow's own error shape, which its clients turn into an MlflowException.
    code = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"
    return {"error_code": code, "message": message}


def create_app(app: Any = None) -> Any:
    """MLflow's server app with the gate in front of every route (the ``mlflow.app`` entry point).

    Under uvicorn (MLflow's default) the gate is an HTTP middleware of MLflow's
    FastAPI app, which also serves routes of its own besides the Flask app.
    """
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app
    from starlette.responses import Response

    gate = Gate()
    fastapi_app = create_fastapi_app(app or flask_app)

    @fastapi_app.middleware("http")
    async def check(request: Any, call_next: Any) -> Any:
        refused = gate.refusal(request.method, request.url.path, request.headers.get("authorization"))
        if refused is not None:
            status, body = refused
            return Response(json.dumps(body), status_code=status, media_type="application/json")
        return await call_next(request)

    return fastapi_app
