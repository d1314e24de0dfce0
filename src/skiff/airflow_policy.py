"""Airflow cluster policy: GPU queue on request; at run start, who the run is and the visibility rule.

**Identity.** The same pre-execute hook gives the task process (and so papermill's
kernel) the name of whoever started the run (skiff.run_identity): the console's
events and MLflow's ``mlflow.user`` say who, not ``airflow`` or ``root``. An Elyra
node keeps its pipeline owner's name (skiff.pipelines.runner).

**The visibility rule** (skiff.catalog): before any task of a run executes, the
catalog is asked whether the DAG's workflow may run with today's access levels
(``POST /api/v1/workflows/by-dag/DAG_ID/runnable``): a public workflow whose used
dataset has since become private must not run. ``task_policy`` gives every task
a pre-execute hook doing that; Airflow applies cluster policies wherever it
parses DAG files, including the worker that runs the task (the task runner
parses the file and calls ``task._pre_execute_hook`` before ``execute``, in
``airflow.sdk.execution_time.task_runner._execute_task``), so the check runs in
the task's own process, before its code. A refusal raises
``AirflowFailException``: the task fails without retries, its log says which
asset, and the tasks after it do not run. A DAG the catalog does not know (404)
is refused too: nobody is on record as its owner, so nothing says who may see its
runs (fail closed); a catalog that does not answer fails the task (with retries),
rather than letting a run skip the check.

**GPU queue.**
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

import logging
import os
from typing import Any

from skiff import run_identity
from skiff.pipelines.spec import GPU_QUEUE

log = logging.getLogger(__name__)

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


class RunRefused(RuntimeError):
    """The catalog refused the run: the message names the workflow and the offending asset."""


def check_runnable(dag_id: str, environ: Any = os.environ) -> str:
    """Ask the catalog whether ``dag_id`` may run; returns why it may, raises RunRefused if not."""
    from skiff.catalog import lineage
    from skiff.catalog.client import CatalogError, Client

    url = environ.get("CATALOG_URL")
    if not url:
        return "no catalog configured (CATALOG_URL)"
    with Client(url, token=lineage.service_token(environ)) as client:
        try:
            answer = client.runnable(dag_id)
        except CatalogError as exc:
            if exc.status == 404:
                raise RunRefused(f"DAG {dag_id} is not registered as a workflow in the catalog: "
                                 "nothing says who owns it or who may see its runs (the Elyra "
                                 "runtime registers pipelines; the platform's DAGs are "
                                 "skiff.catalog.workflows.PLATFORM_DAGS)") from None
            if exc.status == 422:
                asset = f" (asset {exc.asset})" if exc.asset else ""
                message = exc.body.get("message") if isinstance(exc.body, dict) else None
                raise RunRefused(f"the catalog refuses this run of {dag_id}: "
                                 f"{message or exc}{asset}") from None
            raise
    workflow = (answer.get("workflow") or {}).get("ref", f"the workflow of {dag_id}")
    return f"{workflow} may run"


def catalog_check(context: Any) -> None:
    """A task's pre-execute hook: the run's identity, then the catalog's verdict.

    The task process and its children take the name of whoever started the run
    (skiff.run_identity); the task fails, without retries, if the catalog refuses the run.
    """
    from airflow.sdk.exceptions import AirflowFailException

    dag_run = context["dag_run"]
    who = run_identity.started_by(dag_run, getattr(context.get("dag"), "owner", None))
    run_identity.adopt(who)
    log.info("this run is %s's", who)
    dag_id = dag_run.dag_id
    try:
        verdict = check_runnable(dag_id)
    except RunRefused as exc:
        raise AirflowFailException(str(exc)) from None
    log.info("visibility rule: %s", verdict)


def task_policy(task: Any) -> None:
    """Every task checks the visibility rule before it executes (its own pre-execute hook kept)."""
    own = getattr(task, "_pre_execute_hook", None)
    if own is catalog_check or getattr(own, "_skiff_checks", False):
        return
    if own is None:
        task._pre_execute_hook = catalog_check
        return

    def both(context: Any) -> None:
        catalog_check(context)
        own(context)

    both._skiff_checks = True  # type: ignore[attr-defined]
    task._pre_execute_hook = both
