"""The visibility rule enforced where workflows enter and where runs start, on the real stack.

- At submission: skiff.pipelines.governance (what the Elyra runtime calls) asks the
  catalog as the submitting user; the two forbidden combinations (a team workflow
  using a private asset, a public workflow using a team or private asset) are
  refused naming the asset, the others pass; then through Elyra itself: a
  JupyterLab server of the workspace venv, as alice, submitting a pipeline whose
  properties make it public while it uses her team's dataset: refused, no DAG;
  as a team pipeline it is accepted, and its run's node outputs are recorded as
  the team's datasets, made by alice's run (skiff.catalog.pipelines).
- At run start: a DAG registered as a public workflow using a public dataset runs;
  once the dataset is made team-only, the next run's task fails before its code,
  without retries, its log naming the dataset (skiff.airflow_policy.task_policy).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from skiff import airflow_api
from skiff.catalog import CatalogError, Client, pipelines
from skiff.native.context import Context
from skiff.pipelines import governance
from skiff.pipelines.governance import Declared, GovernanceError
from skiff.services import workspace
from tests.catalog.people import People
from tests.jupyter_server import JupyterServer, jupyter_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def assets(people: People) -> dict[str, str]:
    """alice's datasets at each access level, and carol's private one."""
    refs = {}
    with people.client("alice") as alice:
        for level in ("private", "team", "public"):
            name = f"ce-{level}-{people.suffix}"
            alice.register("dataset", name, access=level, team=None if level == "private" else people.team_a)
            refs[level] = f"dataset/{name}"
    with people.client("carol") as carol:
        name = f"ce-carols-{people.suffix}"
        carol.register("dataset", name, access="private")
        refs["carols"] = f"dataset/{name}"
    return refs


@pytest.mark.parametrize(("access", "used"), [("team", "private"), ("public", "team"), ("public", "private")])
def test_submission_refuses_the_forbidden_combinations_naming_the_asset(
        people: People, assets: dict[str, str], access: str, used: str) -> None:
    with people.client("alice") as alice, pytest.raises(GovernanceError) as refused:
        governance.check(alice, Declared(access=access, team=people.team_a, uses=[assets[used]]))
    assert assets[used] in str(refused.value)
    assert "refuses" in str(refused.value)


@pytest.mark.parametrize(("access", "used"), [
    ("private", "private"), ("private", "team"), ("private", "public"),
    ("team", "team"), ("team", "public"), ("public", "public")])
def test_submission_allows_the_other_combinations(people: People, assets: dict[str, str], access: str,
                                                  used: str) -> None:
    team = None if access == "private" else people.team_a
    with people.client("alice") as alice:
        governance.check(alice, Declared(access=access, team=team, uses=[assets[used]]))


def test_an_asset_the_submitter_cannot_see_is_refused_like_an_unknown_one(
        people: People, assets: dict[str, str]) -> None:
    with people.client("alice") as alice:
        for ref in (assets["carols"], f"dataset/ce-nothing-{people.suffix}"):
            with pytest.raises(GovernanceError) as refused:
                governance.check(alice, Declared(access="private", uses=[ref]))
            assert ref in str(refused.value)


def test_registration_rechecks_the_rule_and_records_the_workflow(people: People,
                                                                 assets: dict[str, str]) -> None:
    dag_id = people.dag_id("alice", "ce_registered")
    with people.client("alice") as alice:
        with pytest.raises(GovernanceError) as refused:
            governance.register(alice, dag_id, Declared("public", people.team_a, [assets["team"]]))
        assert assets["team"] in str(refused.value)
        governance.register(alice, dag_id, Declared("team", people.team_a, [assets["team"]]))
        workflow = alice.workflow_for_dag(dag_id)
    assert workflow is not None
    assert workflow["access"] == "team"
    assert workflow["spec"]["uses"] == [assets["team"]]
    assert workflow["spec"]["engine"] == "elyra"


# --- Elyra: a user's JupyterLab server submits ------------------------------------

@pytest.fixture(scope="module")
def alices_jupyter(stack: Context, people: People,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """The workspace venv's Jupyter with Elyra and users' environment, signed in to the catalog as alice."""
    user = people.names["alice"]
    with jupyter_server(stack, tmp_path_factory.mktemp("jupyter-alice"), user, people.passwords["alice"], {
            "SKIFF_USERNAME": user, "SKIFF_PASSWORD": people.passwords["alice"]}) as server:
        yield server


def _pipeline(home: Path, name: str, access: str, team: str, uses: str) -> dict[str, Any]:
    """The example pipeline as the editor sends it, with the catalog properties set."""
    doc = json.loads((home / "pipelines" / "bracelet_training.pipeline").read_text())
    primary = doc["pipelines"][0]
    primary["app_data"].update(name=name, source=f"{name}.pipeline", runtime="skiff-airflow",
                               runtime_config="skiff")
    primary["app_data"]["properties"]["pipeline_defaults"].update(
        skiff_access=access, skiff_team=team, skiff_uses=uses)
    for node in primary["nodes"]:
        params = node["app_data"]["component_parameters"]
        params["filename"] = os.path.normpath(os.path.join("pipelines", params["filename"]))
    return doc


def test_elyra_refuses_a_public_pipeline_using_a_team_dataset_and_writes_no_dag(
        stack: Context, people: People, assets: dict[str, str], alices_jupyter: JupyterServer) -> None:
    name = f"ce_elyra_{people.suffix}"
    refused = alices_jupyter.http.post("/elyra/pipeline/schedule", json=_pipeline(
        alices_jupyter.home, name, "public", people.team_a, assets["team"]))
    assert refused.status_code >= 400, refused.text
    assert assets["team"] in refused.text
    dag_file = workspace.dag_folder(stack) / people.names["alice"].replace("-", "_") / f"{name}.py"
    assert not dag_file.exists()

    accepted = alices_jupyter.http.post("/elyra/pipeline/schedule", json=_pipeline(
        alices_jupyter.home, name, "team", people.team_a, assets["team"]))
    assert accepted.status_code == 200, accepted.text
    dag_id = accepted.json()["dag_id"]
    try:
        with people.client("bob") as bob:
            workflow = bob.workflow_for_dag(dag_id)
        assert workflow is not None, "bob, of alice's team, sees the team workflow"
        assert workflow["owner"] == people.names["alice"]
        assert workflow["spec"]["uses"] == [assets["team"]]
        with people.client("carol") as carol:
            assert carol.workflow_for_dag(dag_id) is None

        # Run it: the nodes' outputs are recorded as the team's, made by alice's run.
        with airflow_api.client(stack) as api:
            airflow_api.wait_for_dag(api, dag_id, timeout=300)
            run_id = airflow_api.trigger(api, dag_id)
            assert airflow_api.wait_run(api, dag_id, run_id, timeout=900) == "success"
        output = f"dataset/{pipelines.output_asset(dag_id, 'bracelet_extra_rows.csv')}"
        with people.client("bob") as bob:
            made = bob.history(output)["chain"][0]
            assert bob.asset(output)["access"] == "team"
        assert made["run"]["dag_run_id"] == run_id
        assert made["run"]["workflow"] == f"workflow/{dag_id}"
        assert made["run"]["user"] == people.names["alice"]
        assert made["location"].startswith("s3://pipelines/")
        assert made["digest"].startswith("sha256:")
        with people.client("carol") as carol, pytest.raises(CatalogError):
            carol.asset(output)
    finally:
        Path(accepted.json()["dag_file"]).unlink(missing_ok=True)
        with airflow_api.client(stack) as api:
            api.delete(f"/dags/{dag_id}")


# --- run start: the Airflow policy ---------------------------------------------------

PROBE_DAG = '''"""A probe of the run-start check (tests/catalog/test_enforcement_stack.py)."""
import datetime

from airflow.sdk import dag, task


@dag(dag_id={dag_id!r}, schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False,
     default_args={{"retries": 2}}, tags=["test"])
def probe():
    @task
    def touch():
        print("the probe's own code ran")
        return "ran"

    touch()


probe()
'''


def _log(api: httpx.Client, dag_id: str, run_id: str, task_id: str) -> str:
    resp = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
                   params={"full_content": "true"}, headers={"Accept": "application/json"})
    resp.raise_for_status()
    content = resp.json().get("content")
    if isinstance(content, list):
        return "\n".join(json.dumps(item) if not isinstance(item, str) else item for item in content)
    return str(content)


@contextmanager
def probe_dag(stack: Context, dag_id: str) -> Iterator[httpx.Client]:
    """PROBE_DAG as ``dag_id`` in the folder Airflow reads, until Airflow has it; the
    Airflow API client; the file and the DAG gone afterwards."""
    folder = stack.root / "dags" / "pipelines" / "ce_tests"
    folder.mkdir(parents=True, exist_ok=True)
    dag_file = folder / f"{dag_id}.py"
    dag_file.write_text(PROBE_DAG.format(dag_id=dag_id))
    api = airflow_api.client(stack)
    try:
        airflow_api.wait_for_dag(api, dag_id, timeout=300)
        yield api
    finally:
        dag_file.unlink(missing_ok=True)
        api.delete(f"/dags/{dag_id}")
        api.close()


def test_a_run_fails_at_start_once_a_used_dataset_is_no_longer_public(
        stack: Context, people: People) -> None:
    dag_id = people.dag_id("alice", "ce_probe")
    dataset = f"ce-probe-data-{people.suffix}"
    with people.client("alice") as alice:
        alice.register("dataset", dataset, access="public", team=people.team_a)
        governance.register(alice, dag_id, Declared("public", people.team_a, [f"dataset/{dataset}"]))
    with probe_dag(stack, dag_id) as api:
        first = airflow_api.trigger(api, dag_id)
        assert airflow_api.wait_run(api, dag_id, first, timeout=300) == "success"
        assert "may run" in _log(api, dag_id, first, "touch")

        with people.client("alice") as alice:
            alice.set_access(f"dataset/{dataset}", "team", people.team_a)
        second = airflow_api.trigger(api, dag_id)
        assert airflow_api.wait_run(api, dag_id, second, timeout=300) == "failed"
        ti = api.get(f"/dags/{dag_id}/dagRuns/{second}/taskInstances/touch").json()
        assert ti["state"] == "failed"
        assert ti["try_number"] == 1, "refused without retries"
        log = _log(api, dag_id, second, "touch")
        assert f"dataset/{dataset}" in log
        assert "the probe's own code ran" not in log


def test_a_dag_nobody_registered_does_not_run(stack: Context, people: People) -> None:
    """A DAG file that appears without a workflow (written past the Elyra runtime) fails
    at start: nobody is on record as its owner (fail closed)."""
    dag_id = people.dag_id("alice", "ce_unregistered")
    with probe_dag(stack, dag_id) as api:
        run = airflow_api.trigger(api, dag_id)
        assert airflow_api.wait_run(api, dag_id, run, timeout=300) == "failed"
        ti = api.get(f"/dags/{dag_id}/dagRuns/{run}/taskInstances/touch").json()
        assert ti["try_number"] == 1, "refused without retries"
        log = _log(api, dag_id, run, "touch")
        assert "is not registered as a workflow in the catalog" in log
        assert "the probe's own code ran" not in log


def test_the_catalog_answers_runnable_for_the_platforms_dags(stack: Context) -> None:
    from skiff.catalog import workflows

    with workflows.service_client(stack.settings) as client:
        refs = workflows.register_platform_workflows(client)
        assert "workflow/bracelet_training" in refs
        answer = client.runnable("bracelet_training")
    assert answer["ok"] is True
    with pytest.raises(CatalogError) as unknown:
        Client(token=None, username=stack.settings.platform_admin_user,
               password=stack.settings.platform_admin_password.get_secret_value(),
               settings=stack.settings).runnable(f"no_such_dag_{secrets.token_hex(3)}")
    assert unknown.value.status == 404
