"""The Keycloak access token this process's MLflow requests carry (an MLflow request header provider).

MLflow lets callers inside the platform's network read and track runs without a
token, but moving an alias and the other changes that decide what is served need
one (serving/mlflow_auth.py). MLflow finds this provider through the skiff
package's ``mlflow.request_header_provider`` entry point, in every venv that has
skiff, and asks it before each request. The token is whoever this process runs as:

- ``MLFLOW_TRACKING_TOKEN`` set: MLflow sends that itself; nothing is added;
- ``SKIFF_TOKEN``: that token (any Keycloak access token of the realm);
- in a person's notebook server: their own token, which the hub keeps
  (skiff.catalog.client.hub_token_source);
- a platform task (Airflow's workers: AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET,
  which a pipeline node's environment never holds): the platform's service
  account, client credentials of client ``airflow``;
- ``SKIFF_USERNAME``/``SKIFF_PASSWORD``: that person;
- none of these: no header.

A token is reused until 30 s before it expires.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping

# Seconds before expiry at which a token is fetched again.
MARGIN_S = 30.0

TokenSource = Callable[[], str]


def expiry(token: str) -> float:
    """The token's ``exp`` (not verified: MLflow's server checks the token; we only cache it)."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        return 0.0


def source(environ: Mapping[str, str] = os.environ) -> TokenSource | None:
    """Where this process's token comes from, or None (no token: reads and tracking only)."""
    if environ.get("MLFLOW_TRACKING_TOKEN"):
        return None
    if environ.get("SKIFF_TOKEN"):
        fixed = environ["SKIFF_TOKEN"]
        return lambda: fixed
    from skiff.catalog.client import hub_token_source, password_token_source

    hub = hub_token_source(environ)
    if hub is not None:
        return hub
    if environ.get("AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET"):
        from skiff.catalog import lineage

        return lambda: lineage.service_token(environ)
    if environ.get("SKIFF_USERNAME") and environ.get("SKIFF_PASSWORD"):
        return password_token_source(environ["SKIFF_USERNAME"], environ["SKIFF_PASSWORD"])
    return None


class CachedToken:
    def __init__(self, fetch: TokenSource) -> None:
        self.fetch = fetch
        self._token = ""
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if not self._token or expiry(self._token) - MARGIN_S < time.time():
                self._token = self.fetch()
            return self._token


_cached: CachedToken | None = None


class PlatformToken:
    """MLflow's RequestHeaderProvider interface (``in_context``, ``request_headers``)."""

    def in_context(self) -> bool:
        return source() is not None

    def request_headers(self) -> dict[str, str]:
        global _cached
        fetch = source()
        if fetch is None:
            return {}
        if _cached is None:
            _cached = CachedToken(fetch)
        return {"Authorization": f"Bearer {_cached()}"}
