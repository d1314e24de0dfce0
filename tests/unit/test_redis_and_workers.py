"""Redis (the Celery broker) and Airflow's Celery workers, without the stack.

The broker's configuration is checked by running Debian's redis-server from it on
a free port: a client with the password gets PONG, one without is refused.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from skiff import airflow_policy
from skiff.envfile import GENERATORS
from skiff.native.context import Context
from skiff.native.spec import NotReady
from skiff.services import REGISTRY, airflow, in_start_order, redis

pytestmark = pytest.mark.unit

PASSWORD = 'p@ss "word"/with:odd\\chars'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ctx(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    for name in GENERATORS:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    monkeypatch.setenv("REDIS_PORT", str(_free_port()))
    monkeypatch.setenv("BIND_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW_PARALLELISM", "3")
    return Context(root=root, cache=tmp_path / "cache", state=tmp_path / "state")


@pytest.fixture
def running_redis(ctx: Context) -> Iterator[Context]:
    if not shutil.which(redis.PROGRAM):
        pytest.skip("no redis-server (apt-get install redis-server, as .ci/run does)")
    redis.prepare(ctx)
    (program,) = redis.programs(ctx)
    proc = subprocess.Popen(program.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.ready(ctx)
                break
            except NotReady:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield ctx
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_airflow_starts_after_its_broker() -> None:
    assert "redis" in REGISTRY["airflow"].depends_on
    order = [s.name for s in in_start_order(["airflow"])]
    assert order.index("redis") < order.index("airflow")


def test_the_config_file_holds_the_password_and_only_its_owner_reads_it(ctx: Context) -> None:
    if not shutil.which(redis.PROGRAM):
        pytest.skip("no redis-server")
    redis.prepare(ctx)
    path = redis.config_file(ctx)
    assert path.stat().st_mode & 0o777 == 0o600
    (program,) = redis.programs(ctx)
    assert PASSWORD not in " ".join(program.command)
    assert str(ctx.data_dir("redis")) in path.read_text()


def test_the_broker_answers_only_with_the_password(running_redis: Context) -> None:
    s = running_redis.settings
    with redis_client.Redis(host="127.0.0.1", port=s.redis_port, password=PASSWORD) as good:
        assert good.ping() is True
        assert good.config_get("appendonly") == {"appendonly": "yes"}
    with redis_client.Redis(host="127.0.0.1", port=s.redis_port) as anonymous, \
            pytest.raises(redis_client.AuthenticationError):
        anonymous.ping()


def test_the_broker_url_quotes_the_password(running_redis: Context) -> None:
    url = redis.broker_url(running_redis)
    assert PASSWORD not in url
    with redis_client.Redis.from_url(url) as client:
        assert client.ping() is True


def test_one_worker_per_queue_with_distinct_names(ctx: Context) -> None:
    programs = {p.name: p for p in airflow.programs(ctx)}
    queues = {}
    for name in ("airflow-worker", "airflow-worker-gpu"):
        command = programs[name].command
        assert command[1:3] == ["celery", "worker"]
        options = dict(zip(command[3::2], command[4::2], strict=False))
        queues[name] = (options["--queues"], options["--concurrency"], options["--celery-hostname"])
        assert programs[name].env["SKIFF_WORKER_NAME"] == name
    assert queues == {"airflow-worker": ("default", "3", "airflow-worker@%h"),
                      "airflow-worker-gpu": ("gpu", "1", "airflow-worker-gpu@%h")}


def test_airflow_uses_celery_with_the_broker_and_its_database(ctx: Context) -> None:
    env = airflow.airflow_env(ctx)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == redis.broker_url(ctx)
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + airflow.database_url(ctx)


@pytest.mark.parametrize(("marked", "conf", "queue"), [
    (True, {"gpu": True}, "gpu"), (True, {"gpu": "true"}, "gpu"), (True, {"gpu": False}, None),
    (True, {}, None), (True, None, None), (False, {"gpu": True}, None)])
def test_the_policy_moves_only_marked_tasks_of_runs_asking_for_a_gpu(
        marked: bool, conf: dict[str, Any] | None, queue: str | None) -> None:
    assert airflow_policy.queue_for(airflow_policy.GPU_WHEN_REQUESTED if marked else {}, conf) == queue


def test_airflow_loads_the_policy_from_the_plugins_folder(root: Path) -> None:
    # The file Airflow imports (plugins/ is on its sys.path) hands it our hook.
    local = (root / "plugins" / "airflow_local_settings.py").read_text()
    assert "from skiff.airflow_policy import task_instance_mutation_hook" in local
