"""`skiff demo`: the bracelet scenario on the running stack, step by step.

Train through Airflow, show the tracked run and the promotion, wait for the model
server to serve the champion, send a site's patients through it, and check that
every answered request was captured in Cassandra. The same helpers serve the
end-to-end tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

# The Airflow steps (the tests use them too) come from the platform's Airflow client.
from skiff import airflow_api
from skiff.airflow_api import AirflowError as AirflowError
from skiff.airflow_api import trigger as trigger
from skiff.airflow_api import wait_for_dag as wait_for_dag
from skiff.airflow_api import wait_run as wait_run
from skiff.airflow_api import xcom as xcom
from skiff.native.context import Context
from skiff.services import airflow as airflow
from skiff.services import mlflow

TRAINING_DAG = "bracelet_training"


class DemoError(RuntimeError):
    """A step of the scenario failed; the message says which and why."""


def airflow_client(ctx: Context) -> httpx.Client:
    """Airflow's REST API v2 as the realm's platform admin (PLATFORM_ADMIN_USER in .env)."""
    return airflow_api.client(ctx)


def mlflow_get(ctx: Context, path: str, **params: Any) -> dict[str, Any]:
    resp = httpx.get(f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow/{path}", params=params, timeout=30)
    resp.raise_for_status()
    return dict(resp.json())


def mlflow_service_headers(ctx: Context) -> dict[str, str]:
    """The platform's own token, for MLflow changes that need one (serving/mlflow_auth.py)."""
    from skiff import keycloak

    return {"Authorization": f"Bearer {keycloak.service_token(ctx.settings)}"}


def champion(ctx: Context) -> dict[str, Any] | None:
    """The model version holding the serving alias, or None."""
    s = ctx.settings
    resp = httpx.get(f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow/registered-models/alias",
                     params={"name": s.model_name, "alias": s.model_alias}, timeout=30)
    # No such model: 404. A model without that alias (a version registered, not yet
    # promoted): 400 INVALID_PARAMETER_VALUE "Registered model alias X not found."
    if resp.status_code == 404 or (resp.status_code == 400 and "not found" in resp.text):
        return None
    resp.raise_for_status()
    return dict(resp.json()["model_version"])


def model_server_url(ctx: Context) -> str:
    s = ctx.settings
    return f"http://{s.host('model_server')}:{s.model_server_port}"


def wait_served(ctx: Context, version: str, timeout: float = 120) -> None:
    """Until the model server answers /readyz with ``version``."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{model_server_url(ctx)}/readyz", timeout=5)
            last = resp.text[:200]
            if resp.status_code == 200 and str(resp.json()["model"]["version"]) == str(version):
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(1)
    raise DemoError(f"model server does not serve version {version} after {timeout:.0f}s: {last}")


@dataclass(frozen=True)
class Capture:
    answered: int
    captured: int


def captured(ctx: Context, request_ids: Iterable[str], model_name: str,
             since: datetime, timeout: float = 120) -> Capture:
    """How many of ``request_ids`` have a row in Cassandra, waiting up to ``timeout``."""
    from skiff import cassandra_access
    from skiff.services import cassandra

    wanted = set(request_ids)
    cluster = cassandra.connect(ctx, cassandra_access.READER, timeout=30)
    try:
        session = cluster.connect(cassandra.SCHEMA_KEYSPACE)
        query = session.prepare("SELECT request_id FROM prediction_events WHERE model_name = ? AND day = ?")
        days = sorted({(since + timedelta(days=d)).strftime("%Y-%m-%d")
                       for d in range((datetime.now(UTC) - since).days + 2)})
        deadline = time.monotonic() + timeout
        while True:
            found = {str(r.request_id) for day in days for r in session.execute(query, (model_name, day))}
            got = len(wanted & found)
            if got >= len(wanted) or time.monotonic() > deadline:
                return Capture(len(wanted), got)
            time.sleep(1)
    finally:
        cluster.shutdown()
