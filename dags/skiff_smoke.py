"""Platform self-check: one task that returns a value. Integration tests trigger it."""

from __future__ import annotations

import platform

from airflow.sdk import dag, task


@dag(dag_id="skiff_smoke", schedule=None, catchup=False, tags=["skiff", "smoke"])
def skiff_smoke():
    @task
    def hello() -> dict[str, str]:
        return {"status": "ok", "python": platform.python_version()}

    hello()


skiff_smoke()
