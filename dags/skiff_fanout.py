"""Platform self-check of scale-out: N tasks at once, each says which worker ran it.

The Compose tests scale `airflow-worker` to two containers and check that one run's
tasks land on both.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task


@dag(dag_id="skiff_fanout", schedule=None, catchup=False, tags=["skiff", "smoke"],
     params={"tasks": Param(8, type="integer", minimum=1, maximum=64)})
def skiff_fanout():
    @task
    def shards(**context) -> list[int]:
        return list(range(int(context["params"]["tasks"])))

    @task
    def where(shard: int) -> dict[str, object]:
        import socket

        return {"shard": shard, "host": socket.gethostname()}

    where.expand(shard=shards())


skiff_fanout()
