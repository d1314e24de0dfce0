"""Airflow's Celery workers: both answer, and a task lands on the queue (and worker) it asked for.

Natively two workers share this machine: ``airflow-worker`` (queue ``default``)
and ``airflow-worker-gpu`` (queue ``gpu``); each records ``<worker>@<host>`` as the
host of the task instances it runs (skiff.airflow_hostname), which is how these
tests tell them apart through Airflow's REST API.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import httpx
import pytest

from skiff import airflow_api
from skiff.bracelet import demo
from skiff.native.context import Context
from skiff.services import airflow

pytestmark = pytest.mark.integration

QUEUES_DAG = "skiff_queues"


@pytest.fixture(scope="module")
def api(stack: Context) -> httpx.Client:
    return demo.airflow_client(stack)


def task_instances(api: httpx.Client, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    resp = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    resp.raise_for_status()
    return {t["task_id"]: t for t in resp.json()["task_instances"]}


def ran_on(ti: dict[str, Any]) -> str:
    """The worker (program) that ran a task instance: the part of its host before '@'."""
    return str(ti["hostname"]).partition("@")[0]


def nvidia_gpu() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return listed.returncode == 0 and "GPU " in listed.stdout


def test_both_workers_answer_through_the_broker(stack: Context) -> None:
    assert airflow.answering_workers(stack) == {"airflow-worker", "airflow-worker-gpu"}


def test_each_task_runs_on_the_worker_of_its_queue(api: httpx.Client) -> None:
    run_id = airflow_api.trigger(api, QUEUES_DAG)
    state = airflow_api.wait_run(api, QUEUES_DAG, run_id, timeout=300)
    tis = task_instances(api, QUEUES_DAG, run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items()}
    assert (tis["on_default"]["queue"], ran_on(tis["on_default"])) == ("default", "airflow-worker")
    assert (tis["on_gpu"]["queue"], ran_on(tis["on_gpu"])) == ("gpu", "airflow-worker-gpu")
    # The tasks' own view agrees with what Airflow recorded.
    assert airflow_api.xcom(api, QUEUES_DAG, run_id, "on_default")["worker"] == "airflow-worker"
    assert airflow_api.xcom(api, QUEUES_DAG, run_id, "on_gpu")["worker"] == "airflow-worker-gpu"


def test_a_training_run_that_asks_for_a_gpu_trains_on_the_gpu_worker(api: httpx.Client) -> None:
    run_id = airflow_api.trigger(api, demo.TRAINING_DAG, {"gpu": True, "include_captured": False})
    state = airflow_api.wait_run(api, demo.TRAINING_DAG, run_id, timeout=900)
    tis = task_instances(api, demo.TRAINING_DAG, run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items()}
    # Only the task marked GPU_WHEN_REQUESTED moves; the others stay on the default queue.
    assert {k: (v["queue"], ran_on(v)) for k, v in tis.items()} == {
        "prepare_data": ("default", "airflow-worker"),
        "train": ("gpu", "airflow-worker-gpu"),
        "evaluate_and_promote": ("default", "airflow-worker"),
    }


@pytest.mark.skipif(not nvidia_gpu(), reason="no NVIDIA GPU on this machine (nvidia-smi lists none)")
def test_the_gpu_worker_sees_the_gpu_and_trains_there(api: httpx.Client) -> None:
    run_id = airflow_api.trigger(api, QUEUES_DAG)
    assert airflow_api.wait_run(api, QUEUES_DAG, run_id, timeout=300) == "success"
    assert airflow_api.xcom(api, QUEUES_DAG, run_id, "on_gpu")["gpus"]
    run_id = airflow_api.trigger(api, demo.TRAINING_DAG, {"gpu": True, "include_captured": False})
    assert airflow_api.wait_run(api, demo.TRAINING_DAG, run_id, timeout=900) == "success"
    assert task_instances(api, demo.TRAINING_DAG, run_id)["train"]["queue"] == "gpu"
