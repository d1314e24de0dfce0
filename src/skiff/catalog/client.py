"""``skiff.catalog.Client``: the catalog's REST API (``/api/v1``) with the caller's Keycloak token.

Where the token comes from, first that applies:

1. ``token=`` given to the client;
2. the environment variable ``SKIFF_TOKEN``;
3. inside a JupyterLab server spawned by the platform's JupyterHub: the user's own
   Keycloak access token, read from their JupyterHub ``auth_state`` with the
   server's API token (the hub grants each server ``admin:auth_state!user``, see
   compose/jupyterhub/jupyterhub_config.py). The hub refreshes that token with
   Keycloak, so it is read again when the catalog says it expired;
4. ``username=``/``password=`` (or ``SKIFF_USERNAME``/``SKIFF_PASSWORD``): a
   Keycloak password grant through the platform's ``airflow`` client, which needs
   the platform's settings (.env), so on the platform's own machine only.

Where the catalog is: ``url=``, else ``CATALOG_URL``, else the settings' internal
address (``http://<catalog host>:<catalog port>``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

KINDS = ("dataset", "model", "data_source", "workflow", "service")
ACCESS_LEVELS = ("private", "team", "public")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
API = "/api/v1"


class CatalogError(RuntimeError):
    """The catalog refused a request or could not be reached; ``str()`` is its message.

    ``status`` is the HTTP status (0 when nothing answered), ``error`` the catalog's
    error code (``visibility``, ``unknown_asset``, ``unauthorized``...), ``asset``
    the offending asset's ref where the catalog names one.
    """

    def __init__(self, message: str, status: int = 0, error: str = "", body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.body = body if body is not None else {}

    @property
    def asset(self) -> str | None:
        return self.body.get("asset") if isinstance(self.body, dict) else None


@dataclass(frozen=True)
class Ref:
    """An asset (``KIND/NAME``) or one of its versions (``KIND/NAME@VERSION``)."""

    kind: str
    name: str
    version: str | None = None

    @property
    def asset(self) -> str:
        return f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return self.asset + (f"@{self.version}" if self.version else "")


def parse_ref(text: str) -> Ref:
    """``KIND/NAME[@VERSION]``; ValueError naming what is wrong."""
    kind, slash, rest = text.strip().partition("/")
    if not slash:
        raise ValueError(f"{text!r} is not KIND/NAME (e.g. model/bracelet); kinds: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ValueError(f"{text!r}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    name, at, version = rest.partition("@")
    if not NAME.match(name):
        raise ValueError(f"{text!r}: {name!r} is no valid asset name (letters, digits, . _ -, "
                         "starting with a letter or digit, at most 128)")
    if at and not version:
        raise ValueError(f"{text!r}: nothing after '@' (KIND/NAME@VERSION)")
    return Ref(kind, name, version or None)


# --- tokens -------------------------------------------------------------------

TokenSource = Callable[[], str]


def hub_token_source(environ: Mapping[str, str] = os.environ, timeout: float = 10.0) -> TokenSource | None:
    """Inside a JupyterHub-spawned server: the user's Keycloak token from their auth_state."""
    api_url, api_token, user = (environ.get(k) for k in
                                ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER"))
    if not (api_url and api_token and user):
        return None

    def fetch() -> str:
        resp = httpx.get(f"{api_url.rstrip('/')}/users/{quote(user, safe='')}",
                         headers={"Authorization": f"token {api_token}"}, timeout=timeout)
        if resp.status_code != 200:
            raise CatalogError(f"JupyterHub answered HTTP {resp.status_code} for {user}'s auth state: "
                               f"{resp.text[:200]}", resp.status_code, "hub")
        state = resp.json().get("auth_state") or {}
        if not state.get("access_token"):
            raise CatalogError(
                "JupyterHub gave this server no auth_state: the hub must grant servers "
                "admin:auth_state!user (compose/jupyterhub/jupyterhub_config.py); or set SKIFF_TOKEN",
                403, "hub")
        return str(state["access_token"])

    return fetch


def password_token_source(username: str, password: str, settings: Any = None,
                          timeout: float = 30.0) -> TokenSource:
    """A Keycloak password grant (client ``airflow``), again whenever the token has expired.

    Plain httpx rather than python-keycloak: the workspace venv has no python-keycloak.
    """

    def fetch() -> str:
        s = settings or _settings()
        url = (f"{s.keycloak_internal_url.rstrip('/')}/realms/{s.keycloak_realm}"
               "/protocol/openid-connect/token")
        try:
            resp = httpx.post(url, timeout=timeout, data={
                "grant_type": "password", "client_id": "airflow",
                "client_secret": s.airflow_client_secret.get_secret_value(),
                "username": username, "password": password})
        except httpx.HTTPError as exc:
            raise CatalogError(f"Keycloak at {url} did not answer: {exc}") from exc
        if resp.status_code != 200:
            try:
                reason = resp.json().get("error_description") or resp.text[:200]
            except ValueError:
                reason = resp.text[:200]
            raise CatalogError(f"Keycloak refused a token for {username!r}: {reason}", 401, "unauthorized")
        return str(resp.json()["access_token"])

    return fetch


def _settings() -> Any:
    """The platform's settings (.env of the checkout), for the CLI on the platform's machine."""
    from skiff.settings import Settings, find_root

    return Settings.load(find_root())


def discover_token_source(token: str | None = None, username: str | None = None,
                          password: str | None = None, settings: Any = None,
                          environ: Mapping[str, str] = os.environ) -> tuple[TokenSource, bool]:
    """The token source, and whether it can give a fresh token (it is asked again after a 401)."""
    if token:
        return (lambda: token), False
    if environ.get("SKIFF_TOKEN"):
        fixed = environ["SKIFF_TOKEN"]
        return (lambda: fixed), False
    if username is None:
        hub = hub_token_source(environ)
        if hub is not None:
            return hub, True
    username = username or environ.get("SKIFF_USERNAME")
    password = password if password is not None else environ.get("SKIFF_PASSWORD")
    if username and password:
        return password_token_source(username, password, settings), True
    raise CatalogError("no token for the catalog: pass token=, set SKIFF_TOKEN (a Keycloak access "
                       "token of realm skiff), run inside a platform notebook server, or give a "
                       "user name and password (SKIFF_USERNAME/SKIFF_PASSWORD)", 401, "unauthorized")


class _BearerAuth(httpx.Auth):
    def __init__(self, source: TokenSource, renewable: bool) -> None:
        self.source = source
        self.renewable = renewable
        self._token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None:
            self._token = self.source()
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401 and self.renewable:
            self._token = self.source()
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


def default_url(settings: Any = None, environ: Mapping[str, str] = os.environ) -> str:
    if environ.get("CATALOG_URL"):
        return environ["CATALOG_URL"].rstrip("/")
    s = settings or _settings()
    return f"http://{s.host('catalog')}:{s.catalog_port}"


# --- the client ---------------------------------------------------------------

class Client:
    """The catalog's API as one user (or the platform's service account)."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 username: str | None = None, password: str | None = None, settings: Any = None,
                 token_source: TokenSource | None = None, timeout: float = 30.0) -> None:
        if token_source is not None:
            source, renewable = token_source, True
        else:
            source, renewable = discover_token_source(token, username, password, settings)
        self.url = (url or default_url(settings)).rstrip("/")
        self._http = httpx.Client(base_url=self.url + API, auth=_BearerAuth(source, renewable),
                                  timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None) -> Any:
        """One call; the JSON answer, or CatalogError with the catalog's own message."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, json=json, params=clean or None)
        except httpx.HTTPError as exc:
            raise CatalogError(f"the catalog at {self.url} did not answer: {type(exc).__name__}: "
                               f"{exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"message": resp.text[:300]}
            if not isinstance(body, dict):
                body = {"message": str(body)}
            message = body.get("message") or body.get("error") or resp.reason_phrase
            raise CatalogError(f"{method} {API}{path}: HTTP {resp.status_code}: {message}",
                               resp.status_code, str(body.get("error", "")), body)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    @staticmethod
    def _asset_path(ref: str | Ref) -> str:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        return f"/assets/{r.kind}/{quote(r.name, safe='')}"

    # --- who am I ---

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/me"))

    # --- projects ---

    def projects(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/projects")["projects"])

    def project(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/projects/{quote(name, safe='')}"))

    def create_project(self, name: str, description: str = "", team: str | None = None,
                       access: str | None = None) -> dict[str, Any]:
        body = _without_none({"name": name, "description": description, "team": team, "access": access})
        return dict(self.request("POST", "/projects", json=body))

    def add_to_project(self, project: str, ref: str) -> Any:
        r = parse_ref(ref)
        return self.request("PUT", f"/projects/{quote(project, safe='')}/assets/{r.kind}/{r.name}")

    def remove_from_project(self, project: str, ref: str) -> Any:
        r = parse_ref(ref)
        return self.request("DELETE", f"/projects/{quote(project, safe='')}/assets/{r.kind}/{r.name}")

    # --- assets ---

    def assets(self, kind: str | None = None, project: str | None = None, owner: str | None = None,
               q: str | None = None) -> list[dict[str, Any]]:
        answer = self.request("GET", "/assets", params={"kind": kind, "project": project,
                                                        "owner": owner, "q": q})
        return list(answer["assets"])

    def asset(self, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", self._asset_path(ref)))

    def register(self, kind: str, name: str, **fields: Any) -> dict[str, Any]:
        """A new asset: description, team, access, location, format, spec, projects."""
        body = {"kind": kind, "name": name, **_without_none(fields)}
        return dict(self.request("POST", "/assets", json=body))

    def update(self, ref: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", self._asset_path(ref), json=_without_none(fields)))

    def set_access(self, ref: str, access: str, team: str | None = None) -> dict[str, Any]:
        if access not in ACCESS_LEVELS:
            raise ValueError(f"access {access!r} is not one of {', '.join(ACCESS_LEVELS)}")
        return self.update(ref, access=access, team=team)

    def delete(self, ref: str) -> None:
        self.request("DELETE", self._asset_path(ref))

    def add_data_source(self, name: str, type: str, settings: Mapping[str, Any],
                        secret: Mapping[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        """An external data source; ``secret`` is stored encrypted and never returned."""
        spec: dict[str, Any] = {"type": type, type: dict(settings)}
        if secret:
            spec["secret"] = dict(secret)
        return self.register("data_source", name, spec=spec, **fields)

    def credentials(self, name: str) -> dict[str, Any]:
        """The clear keys of one of your own managed stores (your ``user-<name>`` bucket)."""
        return dict(self.request("GET", f"/assets/data_source/{quote(name, safe='')}/credentials"))

    # --- history ---

    def versions(self, ref: str) -> list[dict[str, Any]]:
        return list(self.request("GET", self._asset_path(ref) + "/versions")["versions"])

    def history(self, ref: str, version: str | None = None) -> dict[str, Any]:
        """The version (default the latest) and every input version back to the raw data."""
        r = parse_ref(ref)
        return dict(self.request("GET", self._asset_path(r) + "/history",
                                 params={"version": version or r.version}))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/runs/{quote(run_id, safe='')}"))

    # --- workflows and the visibility rule ---

    def check_workflow(self, access: str, uses: list[str], team: str | None = None) -> dict[str, Any]:
        """May a workflow of this access level use these assets? CatalogError (422) if not."""
        body = _without_none({"access": access, "team": team, "uses": list(uses)})
        return dict(self.request("POST", "/workflows/check", json=body))

    def workflow_for_dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.request("GET", f"/workflows/by-dag/{quote(dag_id, safe='')}"))
        except CatalogError as exc:
            if exc.status == 404:
                return None
            raise

    def runnable(self, dag_id: str) -> dict[str, Any]:
        """Whether a run of ``dag_id`` may start now: CatalogError 422 naming the asset if not."""
        return dict(self.request("POST", f"/workflows/by-dag/{quote(dag_id, safe='')}/runnable"))

    def lineage(self, event: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/lineage", json=dict(event)))


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
