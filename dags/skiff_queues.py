"""Platform self-check of the Celery queues: one task per queue, each saying which worker ran it.

Integration tests and ``python -m benchmarks orchestration`` trigger it. The gpu
task also lists the NVIDIA GPUs its worker sees (none where there is none).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from airflow.sdk import dag, task


def _where() -> dict[str, object]:
    gpus: list[str] = []
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        gpus = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    return {"worker": os.environ.get("SKIFF_WORKER_NAME", ""), "host": socket.gethostname(), "gpus": gpus}


@dag(dag_id="skiff_queues", schedule=None, catchup=False, tags=["skiff", "smoke"])
def skiff_queues():
    @task
    def on_default() -> dict[str, object]:
        return _where()

    @task(queue="gpu")
    def on_gpu() -> dict[str, object]:
        return _where()

    on_default()
    on_gpu()


skiff_queues()
