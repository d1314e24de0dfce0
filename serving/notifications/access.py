"""Who is calling, and which runs they may see.

The caller: a Keycloak access token of the realm (serving/realm_tokens.py), obtained
by one of the platform's clients (``azp``), the same check as the catalog's. Behind
Traefik the browser's portal session arrives here as such a token too (the
``auth-bearer`` forward-auth middleware).

A run is visible to its owner (the user of its first event), to realm role ``admin``
and the platform's service account, and, when the run belongs to a workflow (an
Airflow DAG), to whoever may read the catalog's workflow asset of that DAG
(``GET /api/v1/workflows/by-dag/<dag_id>`` answers 200), asked with the caller's
own token, the answer cached for CACHE_SECONDS.
Anything else is answered 404, as the catalog does: a run's existence is not revealed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from serving.notifications.config import Config
from serving.realm_tokens import RealmTokens, TokenRejected, bearer

CACHE_SECONDS = 30.0


class ApiError(Exception):
    """An answer other than success: ``{"error": code, "message": text}`` with a status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


def not_found(what: str, ref: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {ref!r} (or it is not visible to you)")


@dataclass(frozen=True)
class Caller:
    user: str
    roles: tuple[str, ...]
    token: str
    service: bool = False
    # When the token expires (epoch seconds): a stream opened with it ends then, and
    # the browser reconnects with a fresh one (through the auth-bearer middleware).
    expires: float = 0.0

    @property
    def admin(self) -> bool:
        return self.service or "admin" in self.roles


class Access:
    def __init__(self, config: Config, http: httpx.Client | None = None) -> None:
        self.config = config
        self.realm = RealmTokens(config.issuer, config.jwks_url)
        self.http = http or httpx.Client(timeout=10)
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def caller(self, header: str | None) -> Caller:
        try:
            user, claims = self.realm.user(header, self.config.clients)
        except TokenRejected as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc
        roles = tuple((claims.get("realm_access") or {}).get("roles") or ())
        # Passed on as it came: the catalog is asked with the caller's own token.
        return Caller(user=user, roles=roles, token=bearer(header),
                      service=user in self.config.service_users,
                      expires=float(claims.get("exp") or 0))

    def visible(self, caller: Caller, owner: str, workflow: str) -> bool:
        if caller.admin or caller.user == owner:
            return True
        return bool(workflow) and self.reads_workflow(caller, workflow)

    def reads_workflow(self, caller: Caller, dag_id: str) -> bool:
        """Whether the catalog lets the caller read the workflow of DAG ``dag_id`` (cached)."""
        key = (caller.user, dag_id)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        # By DAG id, not asset name: a workflow asset's name need not be its DAG's id.
        url = f"{self.config.catalog_url}/api/v1/workflows/by-dag/{quote(dag_id, safe='')}"
        try:
            answer = self.http.get(url, headers={"Authorization": f"Bearer {caller.token}"})
        except httpx.HTTPError as exc:
            raise ApiError(503, "catalog_unavailable",
                           f"cannot ask the catalog who may see workflow {dag_id!r}: {exc}") from exc
        if answer.status_code >= 500:
            raise ApiError(503, "catalog_unavailable",
                           f"the catalog answered {answer.status_code} for workflow {dag_id!r}")
        allowed = answer.status_code == 200
        with self._lock:
            if len(self._cache) > 10000:  # bounded: stale entries of many users
                self._cache.clear()
            self._cache[key] = (now + CACHE_SECONDS, allowed)
        return allowed
