"""Training through Airflow: the notebook's run, the registered version, the promotion.

The first test triggers bracelet_training over REST and checks what MLflow got;
the second sends a request on the Kafka topic training-requests and expects the
training-trigger service to start exactly one run for it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from skiff.bracelet import demo
from skiff.bracelet.training_trigger import GROUP, TOPIC, run_id
from skiff.native.context import Context
from skiff.services import kafka, mlflow

pytestmark = pytest.mark.integration

DAG = demo.TRAINING_DAG


@pytest.fixture(scope="module")
def api(stack: Context) -> httpx.Client:
    return demo.airflow_client(stack)


def _mlflow(stack: Context, path: str, **params: Any) -> dict[str, Any]:
    return demo.mlflow_get(stack, path, **params)


def _versions(stack: Context, name: str) -> set[str]:
    resp = httpx.get(f"{mlflow.tracking_uri(stack)}/api/2.0/mlflow/model-versions/search",
                     params={"filter": f"name='{name}'", "max_results": 1000}, timeout=30)
    resp.raise_for_status()
    return {v["version"] for v in resp.json().get("model_versions", [])}


def _xcom(api: httpx.Client, dag_run_id: str, task_id: str) -> Any:
    resp = api.get(f"/dags/{DAG}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    resp.raise_for_status()
    return resp.json()["value"]


def test_triggered_training_tracks_registers_and_promotes(stack: Context, api: httpx.Client) -> None:
    s = stack.settings
    before = _versions(stack, s.model_name)
    champion_before = demo.champion(stack)

    dag_run_id = demo.trigger(api, DAG, {"model_family": "logistic_regression", "seed": 42})
    state = demo.wait_run(api, DAG, dag_run_id, timeout=600)
    tasks = {t["task_id"]: t["state"] for t in
             api.get(f"/dags/{DAG}/dagRuns/{dag_run_id}/taskInstances").json()["task_instances"]}
    assert state == "success", tasks
    assert tasks == dict.fromkeys(("prepare_data", "train", "evaluate_and_promote"), "success")
    # No GPU asked for: training stays on the default queue (tests/integration/test_airflow_workers.py).
    queues = {t["task_id"]: t["queue"] for t in
              api.get(f"/dags/{DAG}/dagRuns/{dag_run_id}/taskInstances").json()["task_instances"]}
    assert queues == dict.fromkeys(("prepare_data", "train", "evaluate_and_promote"), "default")

    result = _xcom(api, dag_run_id, "evaluate_and_promote")
    version = str(result["version"])
    assert version not in before
    assert version in _versions(stack, s.model_name)

    # The alias: the new version when there was no champion or it is not worse.
    champion = demo.champion(stack)
    assert champion is not None, f"models:/{s.model_name}@{s.model_alias} resolves to nothing"
    if champion_before is None:
        assert result["decision"] == "promoted"
    expected = version if result["decision"] == "promoted" else str(champion_before["version"])
    assert str(champion["version"]) == expected

    # The decision and both scores, on the version.
    mv = _mlflow(stack, "model-versions/get", name=s.model_name, version=version)["model_version"]
    tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    assert tags["skiff.promotion.decision"] == result["decision"]
    assert tags["skiff.promotion.reason"]
    assert tags["skiff.promotion.metric"] == "roc_auc"
    candidate_auc = float(tags["skiff.promotion.candidate_roc_auc"])
    assert 0.75 < candidate_auc <= 1
    if champion_before is None:
        assert tags["skiff.promotion.champion_roc_auc"] == "none"
    else:
        assert 0 <= float(tags["skiff.promotion.champion_roc_auc"]) <= 1

    # The run: metrics on the held-out rows, the same the promotion computed.
    run = _mlflow(stack, "runs/get", run_id=mv["run_id"])["run"]
    assert run["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    for name in ("accuracy", "roc_auc", "f1"):
        assert 0 <= metrics[name] <= 1, (name, metrics[name])
    assert metrics["roc_auc"] > 0.75
    assert metrics["roc_auc"] == pytest.approx(candidate_auc, abs=1e-5)
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["model_family"] == "logistic_regression" and params["seed"] == "42"
    run_tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert run_tags["skiff.version"]
    assert run_tags["skiff.airflow.run_id"] == dag_run_id
    if shutil.which("git"):
        head = subprocess.run(["git", "-C", str(stack.root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        if head:
            assert run_tags["mlflow.source.git.commit"] == head

    # The training dataset, with its digest.
    inputs = run["inputs"]["dataset_inputs"]
    training = [i for i in inputs if {"key": "mlflow.data.context", "value": "training"} in i.get("tags", [])]
    assert len(training) == 1, inputs
    assert training[0]["dataset"]["digest"] == run_tags["skiff.train_digest"]
    assert json.loads(training[0]["dataset"]["profile"])["num_rows"] >= 243

    # The executed notebook, next to the models.
    listed = httpx.get(f"{mlflow.tracking_uri(stack)}/api/2.0/mlflow/artifacts/list",
                       params={"run_id": mv["run_id"], "path": "notebook"}, timeout=30)
    listed.raise_for_status()
    files = {f["path"]: f for f in listed.json().get("files", [])}
    assert int(files["notebook/bracelet_train.executed.ipynb"]["file_size"]) > 0


def _committed(stack: Context, partition: int) -> int | None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers(stack))
    try:
        offsets = admin.list_consumer_group_offsets(GROUP)
    finally:
        admin.close()
    for tp, meta in offsets.items():
        if tp.topic == TOPIC and tp.partition == partition:
            return int(meta.offset)
    return None


def test_a_training_request_on_kafka_triggers_one_run(stack: Context, api: httpx.Client) -> None:
    demo.wait_for_dag(api, DAG)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers(stack), acks="all")
    key = str(uuid.uuid4()).encode()  # one key: both messages land in one partition, in order
    try:
        bad = producer.send(TOPIC, json.dumps({"params": {"model_family": "svm"}}).encode(),
                            key=key).get(timeout=30)
        request = {"params": {"model_family": "random_forest", "seed": 7,
                              "hyperparameters": {"n_estimators": 30}}}
        good = producer.send(TOPIC, json.dumps(request).encode(), key=key).get(timeout=30)
    finally:
        producer.close()
    assert good.partition == bad.partition and good.offset == bad.offset + 1

    dag_run_id = run_id(TOPIC, good.partition, good.offset)
    deadline = time.monotonic() + 120
    while (resp := api.get(f"/dags/{DAG}/dagRuns/{dag_run_id}")).status_code == 404:
        assert time.monotonic() < deadline, (
            f"no run {dag_run_id} after 120s: is training-trigger up? (`skiff logs training-trigger`)")
        time.sleep(1)
    run = resp.json()
    assert run["conf"] == {"model_family": "random_forest", "seed": 7,
                           "hyperparameters": '{"n_estimators": 30}'}
    # Triggered as the trigger's own realm user (role citizen), not as a person.
    assert run["triggering_user_name"] == stack.settings.training_trigger_user
    # The invalid request was skipped (no run) and committed along with the good one.
    assert api.get(f"/dags/{DAG}/dagRuns/{run_id(TOPIC, bad.partition, bad.offset)}").status_code == 404
    deadline = time.monotonic() + 30
    while (_committed(stack, good.partition) or 0) <= good.offset:
        assert time.monotonic() < deadline, "the offset was not committed after the trigger"
        time.sleep(0.5)

    # The run id is the request's offset: a replayed request is a 409, not a second run.
    assert demo.wait_run(api, DAG, dag_run_id, timeout=600) == "success"
    result = _xcom(api, dag_run_id, "evaluate_and_promote")
    assert result["decision"] in ("promoted", "rejected")
    # The run says which service started it, in MLflow as on the console (skiff.run_identity).
    found = httpx.post(f"{mlflow.tracking_uri(stack)}/api/2.0/mlflow/runs/search", timeout=30, json={
        "experiment_ids": _experiment_ids(stack),
        "filter": f"tags.`skiff.airflow.run_id` = '{dag_run_id}'"}).json().get("runs", [])
    assert len(found) == 1, found
    tags = {t["key"]: t["value"] for t in found[0]["data"]["tags"]}
    assert tags["mlflow.user"] == stack.settings.training_trigger_user


def _experiment_ids(stack: Context) -> list[str]:
    found = httpx.post(f"{mlflow.tracking_uri(stack)}/api/2.0/mlflow/experiments/search",
                       json={"max_results": 1000}, timeout=30).json()
    return [e["experiment_id"] for e in found.get("experiments", [])]
