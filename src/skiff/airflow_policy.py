"""Airflow cluster policy: a task that may use a GPU goes to the ``gpu`` queue when its run asks.

A task's Celery queue is fixed when its task instance is created, before any of
the DAG's code runs, so a run-time choice ("this training run wants a GPU") cannot
be made inside the DAG without a second copy of the task behind a branch. Airflow's
``task_instance_mutation_hook`` is the documented place for exactly this: the
scheduler calls it while it creates a run's task instances, with the run (and its
``conf``) at hand. Airflow loads it from plugins/airflow_local_settings.py.

A task opts in with ``executor_config=GPU_WHEN_REQUESTED``; a run asks with
``conf={"gpu": true}`` (a DAG param named :data:`GPU_PARAM`, default false, so
scheduled runs, whose conf is empty, stay on the default queue). Tasks that always
need a GPU (Elyra nodes with a GPU request) simply have ``queue="gpu"``.
"""

from __future__ import annotations

from typing import Any

from skiff.pipelines.spec import GPU_QUEUE

GPU_PARAM = "gpu"
# Celery ignores executor_config; it survives DAG serialization, so the scheduler sees it.
GPU_WHEN_REQUESTED: dict[str, Any] = {"skiff": {"gpu": "when-requested"}}


def gpu_requested(conf: dict[str, Any] | None) -> bool:
    """Whether a run's conf asks for a GPU (a boolean, or what a form or CLI makes of one)."""
    value = (conf or {}).get(GPU_PARAM, False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def queue_for(executor_config: dict[str, Any] | None, conf: dict[str, Any] | None) -> str | None:
    """The queue a task instance must go to, or None to leave the task's own."""
    marked = (executor_config or {}).get("skiff", {}).get("gpu") == "when-requested"
    return GPU_QUEUE if marked and gpu_requested(conf) else None


def task_instance_mutation_hook(task_instance: Any, dag_run: Any) -> None:
    # No run while a task instance is being built (refresh_from_task): nothing to decide yet.
    if dag_run is None:
        return
    queue = queue_for(task_instance.executor_config, dag_run.conf)
    if queue:
        task_instance.queue = queue
