"""Airflow: a DAG triggered through REST API v2 runs its task to success."""

from __future__ import annotations

import httpx
import pytest

from skiff.bracelet import demo
from skiff.native.context import Context
from skiff.services import airflow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(stack: Context) -> httpx.Client:
    return demo.airflow_client(stack)


def test_api_refuses_requests_without_a_token(stack: Context) -> None:
    resp = httpx.get(f"{airflow.base_url(stack)}/api/v2/dags", timeout=30)
    assert resp.status_code == 401


def test_triggered_smoke_dag_runs_its_task_to_success(api: httpx.Client) -> None:
    run_id = demo.trigger(api, "skiff_smoke")
    state = demo.wait_run(api, "skiff_smoke", run_id, timeout=300)
    tasks = api.get(f"/dags/skiff_smoke/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert state == "success"
    assert [(t["task_id"], t["state"]) for t in tasks] == [("hello", "success")]
    xcom = api.get(f"/dags/skiff_smoke/dagRuns/{run_id}/taskInstances/hello/xcomEntries/return_value")
    assert xcom.json()["value"]["status"] == "ok"
