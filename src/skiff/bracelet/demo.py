"""`skiff demo`: the bracelet scenario on the running stack, step by step.

Train through Airflow, show the tracked run and the promotion, wait for the model
server to serve the champion, send a site's patients through it, and check that
every answered request was captured in Cassandra. The same helpers serve the
end-to-end tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from skiff.native.context import Context
from skiff.services import airflow, mlflow

TRAINING_DAG = "bracelet_training"
TERMINAL = {"success", "failed"}


class DemoError(RuntimeError):
    """A step of the scenario failed; the message says which and why."""


def airflow_client(ctx: Context) -> httpx.Client:
    s = ctx.settings
    token = airflow.api_token(airflow.base_url(ctx), s.airflow_admin_user,
                              s.airflow_admin_password.get_secret_value(), timeout=30)
    return httpx.Client(base_url=f"{airflow.base_url(ctx)}/api/v2",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


def wait_for_dag(api: httpx.Client, dag_id: str, timeout: float = 180) -> None:
    """Until the DAG processor has parsed ``dag_id``."""
    deadline = time.monotonic() + timeout
    while api.get(f"/dags/{dag_id}").status_code == 404:
        if time.monotonic() > deadline:
            raise DemoError(f"DAG {dag_id} not found after {timeout:.0f}s: "
                            "see `skiff logs airflow-dag-processor`")
        time.sleep(1)


def trigger(api: httpx.Client, dag_id: str, conf: dict[str, Any] | None = None,
            run_id: str | None = None) -> str:
    wait_for_dag(api, dag_id)
    api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
    if run_id:
        body["dag_run_id"] = run_id
    resp = api.post(f"/dags/{dag_id}/dagRuns", json=body)
    if resp.status_code not in (200, 201):
        raise DemoError(f"triggering {dag_id} failed: HTTP {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["dag_run_id"])


def wait_run(api: httpx.Client, dag_id: str, run_id: str, timeout: float = 900,
             on_tick: Callable[[str, dict[str, str]], None] = lambda s, t: None) -> str:
    """Poll a DAG run until it ends; returns its final state."""
    deadline = time.monotonic() + timeout
    while True:
        state = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        tasks = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        on_tick(state, {t["task_id"]: t["state"] or "queued" for t in tasks})
        if state in TERMINAL:
            return str(state)
        if time.monotonic() > deadline:
            raise DemoError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
        time.sleep(2)


def xcom(api: httpx.Client, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """The return value of one task of a DAG run."""
    resp = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    resp.raise_for_status()
    return dict(resp.json()["value"])


def mlflow_get(ctx: Context, path: str, **params: Any) -> dict[str, Any]:
    resp = httpx.get(f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow/{path}", params=params, timeout=30)
    resp.raise_for_status()
    return dict(resp.json())


def champion(ctx: Context) -> dict[str, Any] | None:
    """The model version holding the serving alias, or None."""
    s = ctx.settings
    resp = httpx.get(f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow/registered-models/alias",
                     params={"name": s.model_name, "alias": s.model_alias}, timeout=30)
    if resp.status_code == 404:
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
    from skiff.services import cassandra

    wanted = set(request_ids)
    s = ctx.settings
    cluster = cassandra.connect(s.host("cassandra"), s.cassandra_port, timeout=30)
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
