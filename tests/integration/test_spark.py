"""The Spark service on the live stack: a worker, Spark Connect behind its token, S3A."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from minio.deleteobjects import DeleteObject

from skiff.native.context import Context
from skiff.services import REGISTRY, s3, spark, workspace

pytestmark = pytest.mark.integration

# Runs in the Spark venv: a client of Spark Connect, as `skiff score` and the DAGs are.
CLIENT = """
import os, sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
path = sys.argv[1]
spark.range(1000).selectExpr("id", "id * 2 AS twice").write.parquet(path)
print(spark.read.parquet(path).selectExpr("sum(twice)").first()[0])
"""


@pytest.fixture(scope="module")
def cluster(stack: Context) -> Context:
    if "spark" not in REGISTRY:
        pytest.skip("spark is not in skiff.services.REGISTRY")
    return stack


def client(ctx: Context, remote: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(spark.python(ctx)), "-c", CLIENT, path],
                          env={**os.environ, "SPARK_REMOTE": remote},
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_master_has_an_alive_worker_and_the_connect_application(cluster: Context) -> None:
    state = spark.master_state(spark.web_url(cluster))
    workers = [w for w in state["workers"] if w["state"] == "ALIVE"]
    assert workers and workers[0]["cores"] == cluster.settings.spark_worker_cores
    assert spark.CONNECT_APP_NAME in {a["name"] for a in state["activeapps"]}


def test_a_client_with_the_token_writes_and_reads_the_s3_store(cluster: Context) -> None:
    key = f"tests/spark-{uuid.uuid4().hex[:12]}"
    done = client(cluster, spark.client_remote(cluster), f"s3a://datasets/{key}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(sum(2 * i for i in range(1000)))
    store = s3.root_client(cluster)
    names = [DeleteObject(o.object_name) for o in store.list_objects("datasets", prefix=key, recursive=True)]
    assert names, "nothing was written to the S3 store"
    list(store.remove_objects("datasets", names))


def test_a_notebook_submits_to_spark_with_its_workspace_environment(cluster: Context) -> None:
    key = f"tests/spark-notebook-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, **workspace.spawn_env(cluster)}
    done = subprocess.run([str(workspace.venv(cluster) / "bin" / "python"), "-c", CLIENT,
                           f"s3a://datasets/{key}"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(sum(2 * i for i in range(1000)))
    store = s3.root_client(cluster)
    list(store.remove_objects("datasets", [DeleteObject(o.object_name) for o in
                                           store.list_objects("datasets", prefix=key, recursive=True)]))


def test_a_client_without_the_token_is_refused(cluster: Context) -> None:
    if cluster.settings.spark_connect_token is None:
        pytest.skip("SPARK_CONNECT_TOKEN is not set in .env: Spark Connect takes anyone")
    done = client(cluster, spark.connect_url(cluster), "s3a://datasets/tests/spark-refused")
    assert done.returncode != 0
    assert "UNAUTHENTICATED" in done.stderr
