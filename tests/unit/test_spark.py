"""The Spark service's definition: pins, programs, folders, readiness and S3A settings."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from skiff.native.context import Context
from skiff.native.spec import NotReady
from skiff.scoring.locations import LocationError, S3Location
from skiff.scoring.model import ModelError, parse_ref
from skiff.services import spark

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx(tmp_path: Path, root: Path) -> Context:
    return Context(root=root, cache=tmp_path / "cache", state=tmp_path / "state")


def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", path.read_text(), re.M))


def test_pyspark_is_the_spark_version(root: Path, versions: dict[str, str]) -> None:
    assert _pins(root / "docker/spark/requirements.txt")["pyspark"] == versions["SPARK_VERSION"]
    # Airflow's tasks are Spark Connect clients of the same version, and their Python
    # libraries must agree with the executors' that run the tasks' functions.
    spark_pins = _pins(root / "docker/spark/requirements.txt")
    airflow_pins = _pins(root / "docker/airflow/requirements.txt")
    for package in ("pyspark", "pandas", "numpy", "pyarrow", "onnxruntime"):
        assert airflow_pins[package] == spark_pins[package], package


def test_pandas_is_a_line_pyspark_supports(root: Path) -> None:
    # pyspark 4.x declares pandas>=2.2.0 for its Arrow and pandas APIs.
    major, minor, *_ = (int(x) for x in _pins(root / "docker/spark/requirements.txt")["pandas"].split("."))
    assert (major, minor) >= (2, 2)


def test_programs_run_the_wheels_distribution_with_state_outside_site_packages(ctx: Context) -> None:
    programs = {p.name: p for p in spark.programs(ctx)}
    assert set(programs) == {"spark-master", "spark-worker", "spark-connect"}
    for program in programs.values():
        assert program.command[0].endswith("pyspark/bin/spark-class")
        assert program.env["SPARK_HOME"].endswith("pyspark")
        for var in ("SPARK_WORKER_DIR", "SPARK_LOCAL_DIRS", "SPARK_LOG_DIR"):
            folder = Path(program.env[var])
            assert folder.is_relative_to(ctx.state), var
            assert "site-packages" not in folder.parts
        assert program.env["AWS_SECRET_ACCESS_KEY"] not in " ".join(program.command)
    s = ctx.settings
    assert programs["spark-master"].command[1] == spark.MASTER_CLASS
    worker = programs["spark-worker"].command
    assert worker[-1] == f"spark://{s.host('spark')}:{s.spark_master_port}"
    assert worker[worker.index("--cores") + 1] == str(s.spark_worker_cores)
    assert worker[worker.index("--host") + 1] == s.bind_host
    connect = programs["spark-connect"].command
    assert connect[connect.index("--class") + 1] == spark.CONNECT_CLASS


def test_in_compose_each_container_finds_the_master_and_s3_by_service_name(
        compose_ctx: Context, compose_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # A container's own address, what Docker's DNS gives its host name.
    here = "172.18.0.9"
    real = socket.gethostbyname
    me = socket.gethostname()
    monkeypatch.setattr(socket, "gethostbyname", lambda name: here if name == me else real(name))
    s = compose_ctx.settings
    programs = {p.name: p for p in spark.programs(compose_ctx)}
    assert set(programs) <= set(compose_doc["services"])
    master = f"spark://spark-master:{s.spark_master_port}"
    worker = programs["spark-worker"].command
    assert worker[-1] == master
    # Each worker registers under its own address: `--scale spark-worker=N` works.
    assert worker[worker.index("--host") + 1] == here
    connect = programs["spark-connect"].command
    assert connect[connect.index("--master") + 1] == master
    conf = dict(arg.split("=", 1) for arg in connect[connect.index("--conf") + 1::2] if "=" in arg)
    assert conf["spark.driver.host"] == here
    assert conf["spark.driver.bindAddress"] == conf["spark.connect.grpc.binding.address"] == "0.0.0.0"
    s3a = spark.s3a_conf(f"http://s3:{s.s3_port}", s.s3_region)
    assert {k: conf[k] for k in s3a} == s3a
    assert spark.connect_url(compose_ctx) == f"sc://spark-connect:{s.spark_connect_port}"


def _state(workers: list[str], apps: list[str]) -> dict[str, object]:
    return {"workers": [{"state": s} for s in workers], "activeapps": [{"name": a} for a in apps]}


def test_ready_needs_an_alive_worker_and_the_connect_application() -> None:
    with pytest.raises(NotReady, match="no ALIVE worker"):
        spark.check_cluster(_state(["DEAD"], [spark.CONNECT_APP_NAME]))
    with pytest.raises(NotReady, match="not registered"):
        spark.check_cluster(_state(["ALIVE"], ["something else"]))
    spark.check_cluster(_state(["DEAD", "ALIVE"], [spark.CONNECT_APP_NAME]))


def test_hadoop_version_is_read_from_the_distributions_jars(tmp_path: Path) -> None:
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "hadoop-client-api-3.5.0.jar").touch()
    assert spark.hadoop_version(tmp_path) == "3.5.0"


@pytest.mark.parametrize(("uri", "message"), [
    ("/tmp/out", "must be an s3://bucket/path URI"),
    ("s3://bucket", "must name a bucket and a path"),
    ("s3:///key", "must name a bucket and a path"),
])
def test_bad_locations_are_refused_with_the_reason(uri: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        S3Location.parse(uri, "--out")


def test_locations_map_to_s3a() -> None:
    where = S3Location.parse("s3://datasets/scores/run-1/", "--out")
    assert (where.bucket, where.key, where.s3a) == ("datasets", "scores/run-1", "s3a://datasets/scores/run-1")


@pytest.mark.parametrize("ref", ["bracelet", "@champion", "bracelet@", "a@b@c"])
def test_bad_model_references_are_refused(ref: str) -> None:
    with pytest.raises(ModelError, match="NAME@ALIAS"):
        parse_ref(ref)


def test_the_token_travels_as_a_header_never_on_a_command_line(ctx: Context) -> None:
    from pydantic import SecretStr

    assert spark.remote_with_token("sc://h:15002", None) == "sc://h:15002"
    assert (spark.remote_with_token("sc://h:15002", SecretStr("a-b_c"))
            == "sc://h:15002/;authorization=Bearer%20a-b_c")
    token = ctx.settings.spark_connect_token
    if token is not None:
        connect = {p.name: p for p in spark.programs(ctx)}["spark-connect"]
        assert connect.env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] == token.get_secret_value()
        assert token.get_secret_value() not in " ".join(connect.command)
