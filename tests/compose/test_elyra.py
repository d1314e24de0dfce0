"""An Elyra pipeline in Compose, the way a data scientist runs one.

A Keycloak user signs in to JupyterHub through Traefik, gets a server (a process in
the jupyterhub container, as natively), and submits the bracelet pipeline through
Elyra's REST API (what the editor's "Run" button calls) on that server. The DAG file
lands in the volume Airflow's containers read; the Airflow workers run both nodes; the
training run is in MLflow under the person who submitted it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from skiff import airflow_api
from skiff.native.context import Context
from skiff.pipelines.spec import identifier
from tests.integration.test_elyra_pipeline import _as_the_editor_sends_it, _mlflow_runs, _wait_for_new_version
from tests.integration.test_jupyterhub import Account, hub_token, log_in, make_user, trust, wait_for_server

pytestmark = [pytest.mark.integration, pytest.mark.compose]


@pytest.fixture(scope="module")
def scientist(stack: Context) -> Iterator[Account]:
    yield from make_user(stack, "data-scientist")


def test_an_elyra_pipeline_runs_on_airflow_under_its_submitter(stack: Context, scientist: Account) -> None:
    public = f"{stack.settings.public_url}/jupyter/"
    run_name = f"elyra-compose-{uuid.uuid4().hex[:8]}"
    with httpx.Client(verify=trust(stack), follow_redirects=True, timeout=120) as browser:
        log_in(browser, f"{public}hub/home", scientist)
        token = hub_token(browser, public, scientist.name)
        wait_for_server(browser, public, scientist.name, token)
        submitted_at = datetime.now(UTC)
        # The user's home was seeded from user-workspace/: the editor sends paths relative to it.
        pipeline = _as_the_editor_sends_it(stack.root / "user-workspace", run_name)
        resp = browser.post(f"{public}user/{scientist.name}/elyra/pipeline/schedule", json=pipeline,
                            headers={"Authorization": f"token {token}"})
    assert resp.status_code == 200, resp.text
    dag_id = resp.json()["dag_id"]
    assert dag_id == f"{identifier(scientist.name)}__bracelet_training"

    api = airflow_api.client(stack)
    try:
        found = _wait_for_new_version(api, dag_id, since=submitted_at, timeout=180)
        assert found["owners"] == [scientist.name]
        run_id = airflow_api.trigger(api, dag_id)
        state = airflow_api.wait_run(api, dag_id, run_id, timeout=900)
        tasks = {t["task_id"]: t["state"] for t in
                 api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]}
        assert (state, tasks) == ("success", {"prepare_data": "success", "train": "success"})
        api.delete(f"/dags/{dag_id}")
    finally:
        api.close()

    runs = _mlflow_runs(stack, "bracelet-pipelines", run_name)
    assert len(runs) == 1, runs
    tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    assert tags["mlflow.user"] == scientist.name
    assert runs[0]["info"]["status"] == "FINISHED"
