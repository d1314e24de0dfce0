"""Elyra pipelines on the platform: the runner against the real S3 store, the bracelet pipeline end to end.

The end-to-end test plays a user's JupyterLab server: a ``jupyter server`` of the
workspace venv (with the environment JupyterHub gives users, and a token), whose
home is a copy of user-workspace/. It submits the two-node bracelet pipeline
through Elyra's REST API (what the editor's "Run" button calls), then checks
that the DAG appears in Airflow, runs to success when triggered, and that the
training run is in MLflow under the submitting user.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import compose_spec
import httpx
import pytest
import yaml

from skiff import airflow_api, keycloak
from skiff.native.context import Context
from skiff.pipelines import storage
from skiff.pipelines.spec import NodeSpec, dag_namespace, identifier
from skiff.services import airflow, mlflow, s3, workspace
from tests.jupyter_server import JupyterServer, jupyter_server, venv_python
from tests.unit.test_pipelines_dag import _interpolate

pytestmark = pytest.mark.integration

# A real data scientist of the realm, fresh per run: the server and the pipeline's nodes
# hold their own S3 keys, which the catalog makes for them.
USER = f"pipeline-tester-{uuid.uuid4().hex[:6]}"
BUCKET = "pipelines"


# --- the runner, on a tiny notebook, against the real S3 store ---

TINY = """
import json, os, pathlib
pathlib.Path("out").mkdir(exist_ok=True)
result = {"greeting": greeting, "count": count, "user": os.environ["USER"],
          "upstream": pathlib.Path("upstream.txt").read_text(), "env": os.environ.get("count")}
pathlib.Path("out/result.json").write_text(json.dumps(result))
if fail:
    raise RuntimeError("asked to fail")
"""


def _cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": tags or []},
            "outputs": [], "source": source}


def _tiny_notebook(folder: Path) -> None:
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [_cell('greeting = "hello"\ncount = 1\nfail = False', ["parameters"]), _cell(TINY)],
    }
    (folder / "tiny.ipynb").write_text(json.dumps(notebook))


@pytest.fixture()
def tiny_node(stack: Context, tmp_path: Path) -> NodeSpec:
    """A notebook node whose archive and upstream output are in S3 already."""
    _tiny_notebook(tmp_path)
    prefix = f"tests__tiny/{uuid.uuid4().hex[:12]}"
    node = NodeSpec(name="tiny", label="tiny", kind="notebook", filename="tiny.ipynb", bucket=BUCKET,
                    prefix=prefix, archive="tiny.tar.gz", owner="tiny-owner", pipeline="tests__tiny",
                    env={"greeting": "from env"}, parameters=["count", "fail"],
                    inputs=["upstream.txt"], outputs=["out/*.json"])
    client = s3.root_client(stack)
    storage.ensure_bucket(client, BUCKET)
    storage.put_bytes(client, BUCKET, storage.archive_key(prefix, "tiny"),
                      storage.pack(tmp_path, ["tiny.ipynb"]), "application/gzip")
    storage.put_bytes(client, BUCKET, f"{storage.outputs_prefix(prefix, 'run-1')}/upstream.txt",
                      b"from the node before", "text/plain")
    return node


def _run(stack: Context, node: NodeSpec, params: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The runner as Compose runs it, in the Airflow venv with the Airflow workers' environment."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **airflow.task_env(stack)}
    return subprocess.run([str(venv_python(stack, "airflow")), "-m", "skiff.pipelines.runner",
                           "--node-json", json.dumps(node.to_json()), "--params-json", json.dumps(params),
                           "--run-id", "run-1"], capture_output=True, text=True, env=env, timeout=300)


def test_the_runner_runs_a_notebook_with_papermill_between_s3_folders(stack: Context,
                                                                      tiny_node: NodeSpec) -> None:
    done = _run(stack, tiny_node, {"count": 3, "fail": False})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    client = s3.root_client(stack)
    outputs = storage.outputs_prefix(tiny_node.prefix, "run-1")
    assert report["outputs"] == [f"s3://{BUCKET}/{outputs}/out/result.json"]
    result = json.loads(storage.get_bytes(client, BUCKET, f"{outputs}/out/result.json"))
    # Node env vars and pipeline parameters are Papermill parameters; parameters also env vars.
    assert result == {"greeting": "from env", "count": 3, "user": "tiny-owner",
                      "upstream": "from the node before", "env": "3"}
    executed = json.loads(storage.get_bytes(
        client, BUCKET, f"{storage.node_prefix(tiny_node.prefix, 'run-1', 'tiny')}/tiny.ipynb"))
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_a_failing_notebook_fails_the_node_and_keeps_the_executed_notebook(
        stack: Context, tiny_node: NodeSpec) -> None:
    done = _run(stack, tiny_node, {"count": 1, "fail": True})
    assert done.returncode == 1
    key = f"{storage.node_prefix(tiny_node.prefix, 'run-1', 'tiny')}/tiny.ipynb"
    assert f"s3://{BUCKET}/{key}" in done.stderr
    executed = storage.get_bytes(s3.root_client(stack), BUCKET, key).decode()
    assert "asked to fail" in executed


def test_a_missing_upstream_output_is_named(stack: Context, tiny_node: NodeSpec) -> None:
    node = NodeSpec.from_json({**tiny_node.to_json(), "inputs": ["not-there.csv"]})
    done = _run(stack, node, {"count": 1, "fail": False})
    assert done.returncode == 1
    assert "input 'not-there.csv'" in done.stderr


# --- the bracelet pipeline, submitted through Elyra's REST API ---

@pytest.fixture(scope="module")
def jupyter(stack: Context, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A user's server: the workspace venv's Jupyter with Elyra, JupyterHub's environment for users."""
    # No hub here to hand the server its user's token: the catalog check at submission
    # (skiff.pipelines.governance) signs in with the user's password instead.
    admin = keycloak.admin_client(stack.settings)
    password = keycloak.create_user(stack.settings, USER, "data-scientist", None, admin=admin)
    try:
        with jupyter_server(stack, tmp_path_factory.mktemp("jupyter"), USER, password, {
                "SKIFF_USERNAME": USER, "SKIFF_PASSWORD": password}) as server:
            yield server
    finally:
        admin.delete_user(admin.get_user_id(USER))


def _as_the_editor_sends_it(home: Path, run_name: str, gpu_node: str | None = None) -> dict[str, Any]:
    """The example pipeline as the editor posts it: workspace-relative paths, runtime set.

    ``gpu_node``: the label of a node whose resources ask for one GPU (Elyra's ``gpu`` property).
    """
    source = home / "pipelines" / "bracelet_training.pipeline"
    doc = json.loads(source.read_text())
    primary = doc["pipelines"][0]
    primary["app_data"].update(name=source.stem, source=source.name, runtime="skiff-airflow",
                               runtime_config="skiff")
    for node in primary["nodes"]:
        params = node["app_data"]["component_parameters"]
        params["filename"] = os.path.normpath(os.path.join("pipelines", params["filename"]))
        if params["filename"].endswith(".ipynb"):
            # A run name of its own, to find this test's run in MLflow.
            params["env_vars"].append({"env_var": "run_name", "value": run_name})
        if node["app_data"].get("label") == gpu_node:
            params["gpu"] = 1
    return doc


def test_elyra_lists_the_skiff_runtime_without_configuration(jupyter: JupyterServer) -> None:
    runtimes = jupyter.http.get("/elyra/metadata/runtimes").json()
    assert [(r["name"], r["schema_name"], r["display_name"]) for r in runtimes["runtimes"]] == [
        ("skiff", "skiff-airflow", "Skiff Airflow")]
    types = jupyter.http.get("/elyra/pipeline/runtimes/types").json()["runtime_types"]
    airflow_type = next(t for t in types if t["id"] == "APACHE_AIRFLOW")
    assert airflow_type["runtime_enabled"] is True
    assert [f["id"] for f in airflow_type["export_file_types"]] == ["py", "yaml"]


def test_the_pipeline_exports_as_a_compose_file(jupyter: JupyterServer) -> None:
    body = {"pipeline": _as_the_editor_sends_it(jupyter.home, "export"), "export_format": "yaml",
            "export_path": "pipelines/bracelet_training.yaml", "overwrite": True}
    resp = jupyter.http.post("/elyra/pipeline/export", json=body)
    assert resp.status_code == 201, resp.text
    text = (jupyter.home / "pipelines" / "bracelet_training.yaml").read_text()
    doc = yaml.safe_load(_interpolate(text, {"S3_ACCESS_KEY": "key", "S3_SECRET_KEY": "secret"}))
    compose_spec.PyCompose.from_json(json.dumps(doc)).validate()
    assert list(doc["services"]) == ["prepare-data", "train"]
    assert doc["services"]["train"]["depends_on"] == {
        "prepare-data": {"condition": "service_completed_successfully"}}


def _mlflow_runs(stack: Context, experiment: str, run_name: str) -> list[dict[str, Any]]:
    uri = mlflow.tracking_uri(stack)
    got = httpx.get(f"{uri}/api/2.0/mlflow/experiments/get-by-name",
                    params={"experiment_name": experiment}, timeout=30)
    got.raise_for_status()
    found = httpx.post(f"{uri}/api/2.0/mlflow/runs/search", timeout=30, json={
        "experiment_ids": [got.json()["experiment"]["experiment_id"]],
        "filter": f"tags.mlflow.runName = '{run_name}'"})
    found.raise_for_status()
    return list(found.json().get("runs", []))


def _wait_for_new_version(api: httpx.Client, dag_id: str, since: datetime, timeout: float) -> dict[str, Any]:
    """The DAG once Airflow has parsed the file written at ``since`` (a run must not get an older one)."""
    deadline = time.monotonic() + timeout
    while True:
        found = airflow_api.wait_for_dag(api, dag_id, timeout=timeout)
        parsed = found.get("last_parsed_time")
        if parsed and datetime.fromisoformat(parsed.replace("Z", "+00:00")) >= since:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"Airflow has not parsed the new {dag_id} after {timeout:.0f} s "
                                 f"(last parsed {parsed})")
        time.sleep(1)


def test_the_bracelet_pipeline_runs_on_airflow_and_lands_in_mlflow_under_its_user(
        stack: Context, jupyter: JupyterServer) -> None:
    run_name = f"elyra-test-{uuid.uuid4().hex[:8]}"
    submitted, submitted_at = time.monotonic(), datetime.now(UTC)
    # The training node asks for a GPU: it must run on the gpu queue's worker.
    resp = jupyter.http.post("/elyra/pipeline/schedule",
                             json=_as_the_editor_sends_it(jupyter.home, run_name, gpu_node="train"))
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    dag_id = answer["dag_id"]
    assert dag_id == f"{dag_namespace(USER)}bracelet_training"
    assert answer["platform"] == "APACHE_AIRFLOW"
    assert answer["run_url"] == f"{airflow.public_url(stack)}/dags/{dag_id}"
    dag_file = Path(answer["dag_file"])
    assert dag_file == workspace.dag_folder(stack) / identifier(USER) / "bracelet_training.py"
    assert dag_file.is_file()

    api = airflow_api.client(stack)
    try:
        found = _wait_for_new_version(api, dag_id, since=submitted_at, timeout=180)
        print(f"DAG {dag_id} in Airflow {time.monotonic() - submitted:.1f} s after the submission")
        assert found["owners"] == [USER]
        assert "owner:" + USER in {t["name"] for t in found["tags"]}
        run_id = airflow_api.trigger(api, dag_id)
        state = airflow_api.wait_run(api, dag_id, run_id, timeout=900)
        tasks = {t["task_id"]: t["state"] for t in
                 api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]}
        assert state == "success", tasks
        assert tasks == {"prepare_data": "success", "train": "success"}
        placed = {t["task_id"]: (t["queue"], str(t["hostname"]).partition("@")[0]) for t in
                  api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]}
        assert placed == {"prepare_data": ("default", "airflow-worker"),
                          "train": ("gpu", "airflow-worker-gpu")}
        trained = airflow_api.xcom(api, dag_id, run_id, "train")
        assert trained["executed"].endswith("/train/bracelet_train.ipynb")
    finally:
        api.close()

    runs = _mlflow_runs(stack, "bracelet-pipelines", run_name)
    assert len(runs) == 1, runs
    run = runs[0]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert tags["mlflow.user"] == USER
    assert run["info"]["status"] == "FINISHED"
    # The prepare node's output reached the notebook: Hungary's rows were added.
    assert params["data_source"] == "bracelet_extra_rows.csv"
    assert int(params["n_train_extra"]) > 0

    # Passed: take the test's DAG out of Airflow (a failure leaves it there to look at).
    dag_file.unlink()
    with airflow_api.client(stack) as api:
        api.delete(f"/dags/{dag_id}")
