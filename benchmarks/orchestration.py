"""Orchestration: from a DAG trigger to its first task running, per Celery queue; the training's wall time.

Against the live native stack (`skiff up`), through Airflow's REST API as the
platform admin. Latency: ``skiff_queues`` (one tiny task on the ``default``
queue, one on ``gpu``) triggered ``--repeat`` times, one run at a time; for each
task, the run's ``queued_at`` (the trigger) to the task instance's
``start_date``, split at the task's ``queued_when`` into the scheduler's part
(run created -> task sent to Celery) and the broker + worker part (sent -> running).
The two queues are each other's comparison: the same DAG run, the same broker,
workers of concurrency 2 and 1. The LocalExecutor figure this replaces is in
docs/benchmarks.md (it cannot run in the same process as Celery).

Training: ``bracelet_training`` (Cleveland only, no captured rows) ``--train-runs``
times, run queued -> run ended; with ``--gpu`` the train task goes to the gpu queue.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import datetime
from typing import Any

import httpx

from skiff import airflow_api
from skiff.native.context import Context

QUEUES_DAG = "skiff_queues"
TRAINING_DAG = "bracelet_training"
TASKS = {"default": "on_default", "gpu": "on_gpu"}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _run_and_instances(api: httpx.Client, dag_id: str, conf: dict[str, Any] | None = None,
                       ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    run_id = airflow_api.trigger(api, dag_id, conf)
    state = airflow_api.wait_run(api, dag_id, run_id, timeout=1200)
    if state != "success":
        raise SystemExit(f"orchestration: {dag_id} run {run_id} ended {state}")
    run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
    tis = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return run, {t["task_id"]: t for t in tis}


def _line(label: str, values: list[float]) -> str:
    return (f"  {label:<32} median {statistics.median(values):6.2f} s   "
            f"min {min(values):6.2f}   max {max(values):6.2f}   (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks orchestration")
    parser.add_argument("--repeat", type=int, default=7, help="runs of the tiny DAG")
    parser.add_argument("--train-runs", type=int, default=1, help="runs of the training DAG")
    parser.add_argument("--gpu", action="store_true", help="train on the gpu queue")
    args, _ = parser.parse_known_args(sys.argv[1:])
    ctx = Context.discover()
    with airflow_api.client(ctx) as api:
        # One untimed run first: the DAG parsed, the workers' first fork done.
        _run_and_instances(api, QUEUES_DAG)
        total: dict[str, list[float]] = {q: [] for q in TASKS}
        scheduler: dict[str, list[float]] = {q: [] for q in TASKS}
        worker: dict[str, list[float]] = {q: [] for q in TASKS}
        for _ in range(args.repeat):
            run, tis = _run_and_instances(api, QUEUES_DAG)
            queued = _time(run["queued_at"])
            for queue, task_id in TASKS.items():
                ti = tis[task_id]
                sent, started = _time(ti["queued_when"]), _time(ti["start_date"])
                total[queue].append((started - queued).total_seconds())
                scheduler[queue].append((sent - queued).total_seconds())
                worker[queue].append((started - sent).total_seconds())
        print(f"orchestration: trigger -> first task running ({QUEUES_DAG}, CeleryExecutor, Redis broker)")
        for queue in TASKS:
            print(f" queue {queue!r}:")
            print(_line("trigger -> task running", total[queue]))
            print(_line("  trigger -> sent to Celery", scheduler[queue]))
            print(_line("  sent -> running on the worker", worker[queue]))
        ratio = statistics.median(total["gpu"]) / statistics.median(total["default"])
        print(f"  gpu queue / default queue (medians): {ratio:.2f}x")

        walls = []
        conf = {"include_captured": False, "gpu": args.gpu}
        for _ in range(args.train_runs):
            run, _tis = _run_and_instances(api, TRAINING_DAG, conf)
            walls.append((_time(run["end_date"]) - _time(run["queued_at"])).total_seconds())
        where = "gpu" if args.gpu else "default"
        print(f"orchestration: {TRAINING_DAG} wall time (trigger -> run ended, train on {where!r})")
        print(_line("wall time", walls))


if __name__ == "__main__":
    main()
