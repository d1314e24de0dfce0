"""Airflow's REST API v2 as the platform's clients use it: the demo, the tests, the training trigger.

Airflow authenticates with the Keycloak auth manager (docs/decisions/0008-airflow-keycloak.md):
``POST {base}/auth/token`` with a realm user's name and password answers an
Airflow JWT that carries the user's Keycloak tokens, and Airflow authorizes each
request by asking Keycloak with that Keycloak access token. Nothing renews the
Keycloak token of a bearer client (the provider's middleware does it for browser
cookies only), so once it expires (the realm's access-token lifespan, 5 minutes)
every authorization check fails and Airflow answers 403. :class:`TokenAuth`
therefore mints a new Airflow token shortly before that.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx

from skiff.native.context import Context
from skiff.services import airflow

TERMINAL = {"success", "failed"}
# Renew a token this many seconds before it (or the Keycloak token inside) expires.
RENEW_MARGIN = 30.0


class AirflowError(RuntimeError):
    """An Airflow API call failed in a way the caller should hear about; the message says why."""


def token(base_url: str, username: str, password: str, timeout: float = 30.0) -> str:
    """An Airflow API token for a realm user (``POST /auth/token``, password grant via Keycloak)."""
    resp = httpx.post(f"{base_url.rstrip('/')}/auth/token",
                      json={"username": username, "password": password}, timeout=timeout)
    if resp.status_code == 403:
        raise AirflowError(f"Airflow refused the credentials of {username!r}: Keycloak did not "
                           f"accept the password (or the account is disabled): {resp.text[:200]}")
    if resp.status_code not in (200, 201):
        raise AirflowError(f"POST {resp.request.url} answered HTTP {resp.status_code}: {resp.text[:300]}")
    return str(resp.json()["access_token"])


def _claims(jwt: str) -> dict[str, Any]:
    # Only read to schedule a renewal: the server verifies the signature, not us.
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def expires_at(airflow_token: str) -> float:
    """When a token stops working: its own expiry or the embedded Keycloak token's, if sooner."""
    claims = _claims(airflow_token)
    expiry = float(claims.get("exp", time.time() + 60))
    inner = claims.get("access_token")
    if inner:
        with contextlib.suppress(IndexError, KeyError, ValueError):
            expiry = min(expiry, float(_claims(inner)["exp"]))
    return expiry


class TokenAuth(httpx.Auth):
    """Bearer auth for Airflow's API as one realm user: renewed before it expires, and on a 401."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None
        self._expires = 0.0

    def renew(self) -> str:
        self._token = token(self.base_url, self.username, self._password, self.timeout)
        self._expires = expires_at(self._token)
        return self._token

    def current(self) -> str:
        if self._token is None or time.time() > self._expires - RENEW_MARGIN:
            return self.renew()
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.current()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.renew()}"
            yield request


def client(ctx: Context, username: str | None = None, password: str | None = None,
           timeout: float = 30.0) -> httpx.Client:
    """REST API v2 (``/api/v2``) as a realm user; the platform admin by default."""
    s = ctx.settings
    if username is None:
        username, password = s.platform_admin_user, s.platform_admin_password.get_secret_value()
    if password is None:
        raise ValueError(f"no password given for {username!r}")
    base = airflow.base_url(ctx)
    return httpx.Client(base_url=f"{base}/api/v2", auth=TokenAuth(base, username, password, timeout),
                        timeout=timeout)


def wait_for_dag(api: httpx.Client, dag_id: str, timeout: float = 180) -> dict[str, Any]:
    """Until the DAG processor has parsed ``dag_id``; returns the DAG."""
    deadline = time.monotonic() + timeout
    while True:
        resp = api.get(f"/dags/{dag_id}")
        if resp.status_code == 200:
            return dict(resp.json())
        if resp.status_code != 404:
            raise AirflowError(f"GET /dags/{dag_id}: HTTP {resp.status_code} {resp.text[:300]}")
        if time.monotonic() > deadline:
            raise AirflowError(f"DAG {dag_id} not found after {timeout:.0f}s: "
                               "see `skiff logs airflow-dag-processor`")
        time.sleep(1)


def trigger(api: httpx.Client, dag_id: str, conf: dict[str, Any] | None = None,
            run_id: str | None = None) -> str:
    """Start a run of ``dag_id`` (unpausing it first if it is paused); returns the run id."""
    dag = wait_for_dag(api, dag_id)
    # Only when needed: unpausing takes a role that may change DAGs, triggering does not.
    if dag.get("is_paused"):
        api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
    if run_id:
        body["dag_run_id"] = run_id
    resp = api.post(f"/dags/{dag_id}/dagRuns", json=body)
    if resp.status_code not in (200, 201):
        raise AirflowError(f"triggering {dag_id} failed: HTTP {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["dag_run_id"])


def wait_run(api: httpx.Client, dag_id: str, run_id: str, timeout: float = 900,
             on_tick: Callable[[str, dict[str, str]], None] = lambda s, t: None) -> str:
    """Poll a DAG run until it ends; returns its final state."""
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
        run.raise_for_status()
        state = run.json()["state"]
        tasks = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        tasks.raise_for_status()
        on_tick(state, {t["task_id"]: t["state"] or "queued" for t in tasks.json()["task_instances"]})
        if state in TERMINAL:
            return str(state)
        if time.monotonic() > deadline:
            raise AirflowError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
        time.sleep(2)


def xcom(api: httpx.Client, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """The return value of one task of a DAG run."""
    resp = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    resp.raise_for_status()
    return dict(resp.json()["value"])
