"""Notebooks that report their progress: events on the platform's Kafka topic, images in S3.

The K-Means example runs with Papermill in the Airflow venv (as a DAG task runs a
notebook) and in the workspace venv with the environment JupyterHub gives a user's
server. The tests read the events topic directly, from the offsets before the run:
the notification service (which stores and forwards them) is not needed here.

The bracelet training notebook's events are checked on a run of the
bracelet_training DAG: the latest successful one (test_bracelet_training.py
triggers one earlier in the session) or, when that run has no events (a stack
whose last training predates them), a new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from skiff import run_identity
from skiff.bracelet import demo
from skiff.native.context import Context
from skiff.services import airflow, kafka, s3, workspace
from tests.jupyter_server import venv_python

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"


# --- the events topic, read directly ---

def _consumer(stack: Context) -> tuple[KafkaConsumer, list[TopicPartition]]:
    topic = stack.settings.events_topic
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers(stack), enable_auto_commit=False,
                             group_id=None)
    partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"no topic {topic!r} in Kafka: `skiff bootstrap kafka` creates it"
    return consumer, [TopicPartition(topic, p) for p in sorted(partitions)]


def _end_offsets(stack: Context) -> dict[TopicPartition, int]:
    consumer, partitions = _consumer(stack)
    try:
        return {tp: int(offset) for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def _offsets_at(stack: Context, when: datetime) -> dict[TopicPartition, int]:
    """Per partition, the first offset of a record written at or after ``when``."""
    consumer, partitions = _consumer(stack)
    try:
        found = consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in partitions})
        ends = consumer.end_offsets(partitions)
        return {tp: int(found[tp].offset) if found[tp] is not None else int(ends[tp])
                for tp in partitions}
    finally:
        consumer.close()


def _events(stack: Context, since: Mapping[TopicPartition, int], run: str | None = None,
            user: str | None = None) -> list[dict[str, Any]]:
    """The events from ``since`` to the current end of the topic, of one run (or one user)."""
    consumer, partitions = _consumer(stack)
    found: list[dict[str, Any]] = []
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, since[tp])
        # emit() returns once Kafka acknowledged the event: the run's events are all
        # before these offsets when the notebook has finished.
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, "reading the events topic took over 60 s"
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    try:
                        event = json.loads(record.value)
                    except ValueError:
                        continue  # not an event (another test's garbage): not ours either way
                    if not isinstance(event, dict):
                        continue
                    if (run is None or event.get("run") == run) and (
                            user is None or event.get("user") == user):
                        found.append(event)
    finally:
        consumer.close()
    # One key per run, so one partition, in the order they were sent.
    return found


def _assert_images_stored(stack: Context, images: list[dict[str, Any]]) -> None:
    client = s3.root_client(stack)
    bucket = stack.settings.events_bucket
    for event in images:
        assert "data" not in event or event["data"] is None, event
        link = event["link"]
        assert link["content_type"] == "image/png", link
        assert link["url"].startswith(f"s3://{bucket}/"), link
        key = link["url"].removeprefix(f"s3://{bucket}/")
        assert client.stat_object(bucket, key).size == link["size"], link
        response = client.get_object(bucket, key, length=len(PNG))
        try:
            assert response.read() == PNG, f"{link['url']} is not a PNG"
        finally:
            response.close()
            response.release_conn()


# --- the K-Means example, with Papermill ---

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _papermill(stack: Context, venv: str, notebook: Path, tmp_path: Path, params: Mapping[str, Any],
               env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Papermill of ``venv`` on its own "python3" kernel, as an Airflow task or a user would run it."""
    executed = tmp_path / f"{notebook.stem}.executed.ipynb"
    return subprocess.run(
        [str(venv_python(stack, venv)), "-m", "papermill", str(notebook), str(executed),
         "-k", "python3", "--cwd", str(tmp_path), "--no-progress-bar", "-y", json.dumps(dict(params))],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True, text=True, timeout=300, check=False)


def _check_kmeans_events(stack: Context, events: list[dict[str, Any]], result: dict[str, Any],
                         progress_every: int) -> None:
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["status", "parameters"], kinds
    assert events[0]["data"]["state"] == "running"
    assert kinds[-4:] == ["parameters", "html", "image", "status"], kinds
    assert events[-1]["data"]["state"] == "success"
    assert len({e["id"] for e in events}) == len(events)

    iterations = result["iterations"]
    metrics = [e for e in events if e["kind"] == "metrics"]
    steps = [m["data"]["step"] for m in metrics]
    # Every progress_every iterations, and the last one.
    assert steps == sorted({*range(progress_every, iterations + 1, progress_every), iterations}), steps
    inertia = [m["data"]["values"]["inertia"] for m in metrics]
    assert all(a >= b - 1e-6 * a for a, b in pairwise(inertia)), \
        f"Lloyd's iterations never increase the inertia: {inertia}"
    assert inertia[-1] == pytest.approx(result["inertia"])

    images = [e for e in events if e["kind"] == "image"]
    # One per progress_every iterations, then the summary's.
    assert len(images) == iterations // progress_every + 1, [i["title"] for i in images]
    _assert_images_stored(stack, images)

    summary = events[-4]["data"]["values"]
    assert summary["iterations"] == iterations and summary["inertia"] == pytest.approx(result["inertia"])
    assert "<table>" in events[-3]["data"]["html"]


def test_kmeans_example_in_the_airflow_venv_sends_progress_events(stack: Context, tmp_path: Path) -> None:
    run, user = f"tests/kmeans/{uuid.uuid4().hex[:12]}", f"kmeans-{uuid.uuid4().hex[:8]}"
    before = _end_offsets(stack)
    done = _papermill(stack, "airflow", NOTEBOOKS / "kmeans_example.ipynb", tmp_path,
                      {"dataset": "digits", "progress_every": 4, "run_id": run,
                       "result_path": str(tmp_path / "result.json")},
                      {**airflow.task_env(stack), "SKIFF_USER": user})
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["run"] == run and result["converged"], result

    events = _events(stack, before, run=run)
    assert events, f"no event of run {run} on topic {stack.settings.events_topic}"
    # The run from the notebook's run_id, the user from SKIFF_USER; no Airflow run around.
    assert {(e["run"], e["user"], e["workflow"], e["step"]) for e in events} == {(run, user, "", "")}
    _check_kmeans_events(stack, events, result, progress_every=4)


def test_kmeans_example_in_jupyterlab_makes_a_run_of_its_user(stack: Context, tmp_path: Path) -> None:
    # What JupyterHub gives a user's server (JUPYTERHUB_USER, SKIFF_USER), no run id: the
    # events go to a new run "notebook/<user>/<id>" of that user.
    user = f"lab-{uuid.uuid4().hex[:8]}"
    env = {**workspace.spawn_env(stack), "JUPYTERHUB_USER": user, "SKIFF_USER": user}
    before = _end_offsets(stack)
    done = _papermill(stack, "workspace", NOTEBOOKS / "kmeans_example.ipynb", tmp_path,
                      {"dataset": "iris", "progress_every": 2, "result_path": str(tmp_path / "result.json")},
                      env)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["run"].startswith(f"notebook/{user}/"), result["run"]

    events = _events(stack, before, user=user)
    assert {e["run"] for e in events} == {result["run"]}
    _check_kmeans_events(stack, events, result, progress_every=2)


def test_a_failing_event_transport_stops_the_notebook_before_it_works(stack: Context,
                                                                      tmp_path: Path) -> None:
    # Nothing listens on port 1: the first event cannot be sent, and the notebook says so
    # instead of clustering without anyone seeing it (send_events=False would run it).
    # kafka-python gives up bootstrapping after skiff.events.transport.BOOTSTRAP_TIMEOUT_S.
    env = {**airflow.task_env(stack), "KAFKA_HOST": "127.0.0.1", "KAFKA_PORT": "1",
           "SKIFF_USER": "nobody", "SKIFF_RUN_ID": "tests/kmeans/no-kafka"}
    done = _papermill(stack, "airflow", NOTEBOOKS / "kmeans_example.ipynb", tmp_path,
                      {"dataset": "iris", "result_path": str(tmp_path / "result.json")}, env)
    assert done.returncode != 0
    assert "EventsError" in done.stderr + done.stdout
    assert not (tmp_path / "result.json").exists()


# --- the bracelet training notebook, on a run of the DAG ---

DAG = demo.TRAINING_DAG


def _latest_success(api: httpx.Client) -> dict[str, Any] | None:
    resp = api.get(f"/dags/{DAG}/dagRuns", params={"state": "success", "order_by": "-start_date",
                                                    "limit": 1})
    resp.raise_for_status()
    runs = resp.json()["dag_runs"]
    return runs[0] if runs else None


def _training_events(stack: Context, dag_run: dict[str, Any]) -> list[dict[str, Any]]:
    started = datetime.fromisoformat(dag_run["start_date"])
    return _events(stack, _offsets_at(stack, started), run=f"{DAG}/{dag_run['dag_run_id']}")


def test_the_training_notebook_reports_its_progress(stack: Context) -> None:
    api = demo.airflow_client(stack)
    dag_run = _latest_success(api)
    events = _training_events(stack, dag_run) if dag_run else []
    if not events:
        # No training since the notebook sends events: one now (the default parameters).
        run_id = demo.trigger(api, DAG, {"model_family": "logistic_regression", "seed": 42})
        assert demo.wait_run(api, DAG, run_id, timeout=600) == "success"
        dag_run = api.get(f"/dags/{DAG}/dagRuns/{run_id}").json()
        events = _training_events(stack, dag_run)
    assert dag_run is not None and events, f"no events of a {DAG} run"

    # The DAG's last step says what became of the version (after the notebook's events).
    promotion = [e for e in events if e["step"] == "evaluate_and_promote"]
    assert [e["kind"] for e in promotion] == ["status", "parameters"], promotion
    assert promotion[0]["data"]["state"] == "success"
    events = [e for e in events if e["step"] != "evaluate_and_promote"]

    # The Airflow run, its DAG (the run's visibility follows it), the notebook's task,
    # and who started the run as the user (skiff.run_identity): a person who triggered
    # it, the training trigger, or the scheduler.
    contexts = {(e["run"], e["workflow"], e["step"], e["user"]) for e in events}
    assert len(contexts) == 1, contexts
    ((run, workflow, step, user),) = contexts
    assert (run, workflow, step) == (f"{DAG}/{dag_run['dag_run_id']}", DAG, "train")
    assert user == (dag_run["triggering_user_name"] or run_identity.SCHEDULER), (user, dag_run)

    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["status", "parameters"] and events[0]["data"]["state"] == "running", kinds
    assert kinds[-4:] == ["parameters", "html", "image", "status"], kinds
    assert events[-1]["data"]["state"] == "success"
    progress_steps = events[1]["data"]["values"]["progress_steps"]
    progress_every = events[1]["data"]["values"]["progress_every"]
    metrics = [e["data"] for e in events if e["kind"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, progress_steps + 1))
    assert all(0 <= m["values"]["holdout_roc_auc"] <= 1 for m in metrics)
    images = [e for e in events if e["kind"] == "image"]
    assert len(images) == progress_steps // progress_every + 1, [i["title"] for i in images]
    _assert_images_stored(stack, images)

    # The summary names the version the run registered, with the metrics MLflow has.
    result = api.get(f"/dags/{DAG}/dagRuns/{dag_run['dag_run_id']}/taskInstances/evaluate_and_promote"
                     "/xcomEntries/return_value")
    result.raise_for_status()
    registered = result.json()["value"]
    assert f"version {registered['version']}: {registered['decision']}" in \
        promotion[0]["data"]["message"]
    summary = events[-4]["data"]["values"]
    assert (summary["model_name"], summary["version"]) == (registered["model_name"],
                                                           str(registered["version"]))
    assert summary["mlflow_run_id"] == registered["run_id"]
    assert 0.5 < summary["holdout_roc_auc"] <= 1
