"""Airflow: a DAG triggered through REST API v2 runs its task to success."""

from __future__ import annotations

import time

import httpx
import pytest

from skiff.native.context import Context
from skiff.services import airflow

pytestmark = pytest.mark.integration

TERMINAL = {"success", "failed"}


@pytest.fixture(scope="module")
def api(stack: Context) -> httpx.Client:
    s = stack.settings
    token = airflow.api_token(airflow.base_url(stack), s.airflow_admin_user,
                              s.airflow_admin_password.get_secret_value(), timeout=30)
    # Generous timeout: on two cores a task start can stall the API for seconds.
    return httpx.Client(base_url=f"{airflow.base_url(stack)}/api/v2",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _wait_for_dag(api: httpx.Client, dag_id: str, timeout: float = 120) -> None:
    # The DAG processor parses new files on its own schedule: wait until it has.
    deadline = time.monotonic() + timeout
    while api.get(f"/dags/{dag_id}").status_code == 404:
        assert time.monotonic() < deadline, f"DAG {dag_id} was never parsed"
        time.sleep(1)


def test_api_refuses_requests_without_a_token(stack: Context) -> None:
    resp = httpx.get(f"{airflow.base_url(stack)}/api/v2/dags", timeout=30)
    assert resp.status_code == 401


def test_triggered_smoke_dag_runs_its_task_to_success(api: httpx.Client) -> None:
    _wait_for_dag(api, "skiff_smoke")
    api.patch("/dags/skiff_smoke", json={"is_paused": False}).raise_for_status()
    resp = api.post("/dags/skiff_smoke/dagRuns", json={"logical_date": None})
    assert resp.status_code in (200, 201), resp.text
    run_id = resp.json()["dag_run_id"]

    deadline = time.monotonic() + 300
    while (state := api.get(f"/dags/skiff_smoke/dagRuns/{run_id}").json()["state"]) not in TERMINAL:
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(1)
    tasks = api.get(f"/dags/skiff_smoke/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert state == "success"
    assert [(t["task_id"], t["state"]) for t in tasks] == [("hello", "success")]
    xcom = api.get(f"/dags/skiff_smoke/dagRuns/{run_id}/taskInstances/hello/xcomEntries/return_value")
    assert xcom.json()["value"]["status"] == "ok"
