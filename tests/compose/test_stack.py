"""The Compose stack itself: every container healthy, one door, scale-out, data kept.

Runs against `docker compose` only (SKIFF_TEST_MODE=compose, `make test-compose`);
the `stack` fixture has brought the stack up with docker-compose.ports.yml.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from skiff import airflow_api, cassandra_access, compose
from skiff.bracelet import demo
from skiff.native.context import Context
from skiff.services import kafka, spark
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.compose]


def docker_compose(ctx: Context, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = compose.command(ctx, *args, publish=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1200)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def compose_stack(stack: Context) -> Context:
    return stack


def test_every_service_is_healthy_and_every_init_job_succeeded(compose_stack: Context) -> None:
    assert compose.unhealthy(compose_stack) == []


def test_the_bracelet_scenario_runs_end_to_end(compose_stack: Context) -> None:
    """Training DAG (Papermill) -> promotion -> the model server serves it -> device
    predictions through Traefik -> each captured once in Cassandra: `skiff demo`."""
    done = subprocess.run([sys.executable, "-m", "skiff.cli", "demo", "--rate", "10",
                           "--duration", "10"], capture_output=True, text=True, timeout=1800,
                          check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "all captured" in done.stdout, done.stdout[-4000:]


def test_only_traefik_listens_beyond_loopback(compose_stack: Context) -> None:
    wide = {c["Service"] for c in compose.containers(compose_stack)
            for p in c.get("Publishers") or []
            if p.get("PublishedPort") and p.get("URL") not in ("127.0.0.1", "::1")}
    assert wide == {"traefik"}


def scaled(ctx: Context, service: str, replicas: int) -> Iterator[Context]:
    """``service`` at ``replicas`` containers for the test, back to one afterwards."""
    def scale(n: int) -> None:
        docker_compose(ctx, "up", "--detach", "--wait", "--no-recreate",
                       "--scale", f"{service}={n}", service)

    scale(replicas)
    yield ctx
    scale(1)


@pytest.fixture
def two_airflow_workers(compose_stack: Context) -> Iterator[Context]:
    yield from scaled(compose_stack, "airflow-worker", 2)


def test_two_airflow_workers_share_one_runs_tasks(two_airflow_workers: Context) -> None:
    api = demo.airflow_client(two_airflow_workers)
    run_id = airflow_api.trigger(api, "skiff_fanout", {"tasks": 12})
    assert airflow_api.wait_run(api, "skiff_fanout", run_id, timeout=600) == "success"
    resp = api.get(f"/dags/skiff_fanout/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    resp.raise_for_status()
    hosts = {t["hostname"] for t in resp.json()["task_instances"] if t["task_id"] == "where"}
    assert len(hosts) == 2, hosts


@pytest.fixture
def two_spark_workers(compose_stack: Context) -> Iterator[Context]:
    yield from scaled(compose_stack, "spark-worker", 2)


# Run in the Spark image's own venv, inside the network, as a DAG's task would.
HOSTS_OF_A_JOB = """
import os, socket
from pyspark.sql import SparkSession, functions
spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
host = functions.udf(lambda _: socket.gethostname())
rows = spark.range(0, 64, 1, 16).select(host("id").alias("host")).distinct().collect()
print(" ".join(sorted(r["host"] for r in rows)))
"""


def test_two_spark_workers_run_one_jobs_tasks(two_spark_workers: Context) -> None:
    ctx = two_spark_workers

    # The Connect application gets an executor on the new worker once it registers.
    def executors_on_both() -> bool:
        state = spark.master_state(spark.web_url(ctx))
        busy = [w for w in state.get("workers", []) if w.get("state") == "ALIVE" and w.get("coresused")]
        return len(busy) >= 2

    eventually(executors_on_both, "an executor on each of two Spark workers", timeout=180, interval=2)
    remote = spark.remote_with_token(f"sc://spark-connect:{ctx.settings.spark_connect_port}",
                                     ctx.settings.spark_connect_token)
    done = docker_compose(ctx, "exec", "-T", "-e", f"SPARK_REMOTE={remote}", "spark-connect",
                          "/opt/skiff/cache/venvs/spark/bin/python", "-c", HOSTS_OF_A_JOB)
    hosts = done.stdout.split()
    assert len(hosts) == 2, done.stdout + done.stderr[-2000:]


def test_data_survives_down_and_up(compose_stack: Context) -> None:
    """Kafka's unread messages and committed offsets, and every service's state, across
    `docker compose down` and `up` (named volumes)."""
    ctx = compose_stack
    topic = f"skiff-survival-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka.bootstrap_servers(ctx)
    kafka.create_topics(bootstrap, [topic])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3):
        producer.send(topic, f"m{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    group = f"{topic}-group"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    first = consumer.poll(timeout_ms=10000, max_records=1)
    assert sum(len(v) for v in first.values()) == 1
    consumer.commit()
    consumer.close()
    before = survival_facts(ctx)

    docker_compose(ctx, "down")
    docker_compose(ctx, "up", "--detach", "--wait")

    after = survival_facts(ctx)
    # Nothing lost; the hourly schedules may have added a run, a version or an asset meanwhile.
    lost = {what: sorted(set(before[what]) - set(after[what])) for what in before if what != "captured rows"}
    assert {what: gone for what, gone in lost.items() if gone} == {}
    assert after["captured rows"] >= before["captured rows"]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    rest = consumer.poll(timeout_ms=10000)
    consumer.close()
    assert [r.value for batch in rest.values() for r in batch] == [b"m1", b"m2"]


def survival_facts(ctx: Context) -> dict[str, Any]:
    """What must outlive the containers: Keycloak's users, MLflow's versions, Airflow's
    runs, the catalog's assets, Cassandra's rows."""
    from skiff import keycloak
    from skiff.services import cassandra, catalog, mlflow

    s = ctx.settings
    headers = {"Authorization": f"Bearer {keycloak.service_token(s)}"}
    facts: dict[str, Any] = {}
    facts["keycloak users"] = [u.name for u in keycloak.list_users(keycloak.admin_client(s))]
    versions = httpx.get(f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow/model-versions/search",
                         params={"max_results": 1000}, timeout=30)
    versions.raise_for_status()
    facts["model versions"] = sorted((v["name"], v["version"]) for v in
                                     versions.json().get("model_versions", []))
    api = demo.airflow_client(ctx)
    runs = api.get("/dags/~/dagRuns", params={"limit": 1000})
    runs.raise_for_status()
    facts["airflow runs"] = sorted(r["dag_run_id"] for r in runs.json()["dag_runs"])
    assets = httpx.get(f"{catalog.internal_url(s)}/api/v1/assets", headers=headers, timeout=30)
    assets.raise_for_status()
    facts["catalog assets"] = sorted(a["ref"] for a in assets.json()["assets"])
    cluster = cassandra.connect(ctx, cassandra_access.READER, timeout=30)
    try:
        cql = cluster.connect(cassandra.SCHEMA_KEYSPACE)
        facts["captured rows"] = cql.execute("SELECT count(*) FROM prediction_events").one()[0]
    finally:
        cluster.shutdown()
    return facts
