"""Spark standalone: a master, a worker and the Spark Connect server that clients talk to.

Natively all three run from the Spark distribution inside the pyspark wheel
(``docker/spark/requirements.txt``, the same file the image installs), started
with ``spark-class``; in Compose they are ``spark-master``, ``spark-worker``
(scalable with ``--scale``) and ``spark-connect`` from ``docker/spark``.

Clients (``skiff score``, Airflow tasks, notebooks) never start a JVM: they send
DataFrame plans to Spark Connect (docs/decisions/0010-spark.md). The Connect
server is the one long-lived Spark application; its executors on the workers run
Python UDFs with this venv's Python (pandas, pyarrow, onnxruntime).

S3 (``s3a://``) goes through Hadoop's S3A with the individual AWS SDK modules of
``native/poms/spark-s3a.xml``, at the Hadoop version of pyspark's own jars.
Worker directories, local (spill) directories and logs live under the stack's
data and log folders, never inside site-packages.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from skiff.native import installing
from skiff.native.context import Context
from skiff.native.java import JAVA_PACKAGES, install_jars, java_command
from skiff.native.spec import NotReady, Program, Service

NAME = "spark"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
SUBMIT_CLASS = "org.apache.spark.deploy.SparkSubmit"
CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# What the master's UI lists the Connect server's application as.
CONNECT_APP_NAME = "Spark Connect server"


def venv(ctx: Context) -> Path:
    return ctx.venv("spark")


def python(ctx: Context) -> Path:
    return venv(ctx) / "bin" / "python"


def spark_home(ctx: Context) -> Path:
    """The pyspark package folder: the distribution (bin/, jars/) the wheel ships."""
    found = sorted((venv(ctx) / "lib").glob("python3*/site-packages/pyspark"))
    if not found:
        # Before install; programs() must not fail, `up` installs first.
        return venv(ctx) / "lib" / "python3" / "site-packages" / "pyspark"
    return found[0]


def hadoop_version(home: Path) -> str:
    """The Hadoop version of the distribution's jars: S3A must be exactly that version."""
    jars = sorted((home / "jars").glob("hadoop-client-api-*.jar"))
    if not jars:
        raise installing.InstallError(f"spark: no hadoop-client-api jar in {home / 'jars'}")
    return jars[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar")


def s3a_libs(ctx: Context) -> Path:
    try:
        version = hadoop_version(spark_home(ctx))
    except installing.InstallError:
        # Not installed yet: programs() must still describe the service; `up` installs first.
        version = "not-installed"
    return ctx.component("spark-s3a", version) / "libs"


def install(ctx: Context) -> None:
    installing.venv(NAME, venv(ctx), ctx.root / "docker" / NAME / "requirements.txt")
    hadoop = hadoop_version(spark_home(ctx))
    install_jars(ctx, "spark-s3a", hadoop, {"hadoop.version": hadoop})


def master_url(ctx: Context) -> str:
    s = ctx.settings
    return f"spark://{s.host('spark')}:{s.spark_master_port}"


def connect_url(ctx: Context) -> str:
    """Where Spark Connect listens (shown by `skiff status`; no secret in it)."""
    s = ctx.settings
    return f"sc://{s.spark_connect_host or s.host('spark')}:{s.spark_connect_port}"


def client_remote(ctx: Context) -> str:
    """What clients pass to ``SparkSession.builder.remote``: the address and the token.

    The token goes as an ``Authorization: Bearer`` header, which the server's
    pre-shared-key check reads. pyspark's own ``token=`` parameter would insist on
    TLS for any host but "localhost"; the header works on the plain channel, as the
    platform's other internal services do (docs/decisions/0010-spark.md).
    """
    return remote_with_token(connect_url(ctx), ctx.settings.spark_connect_token)


def remote_with_token(url: str, token: SecretStr | None) -> str:
    if token is None or not token.get_secret_value():
        return url
    return f"{url}/;authorization={quote('Bearer ' + token.get_secret_value(), safe='')}"


def web_url(ctx: Context) -> str:
    s = ctx.settings
    return f"http://{s.host('spark')}:{s.spark_master_web_port}"


def s3a_conf(endpoint: str, region: str) -> dict[str, str]:
    """Hadoop S3A settings for the S3 store; the keys come from AWS_* in the environment.

    Shared with the Compose command lines (tests/unit/test_spark.py checks they agree).
    """
    return {
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        # versitygw serves buckets as paths, not as host names.
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
        # Keys in the environment, not on a command line (`ps`) nor in a file.
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
    }


def connect_conf(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    conf = {
        "spark.connect.grpc.binding.address": s.bind_host,
        "spark.connect.grpc.binding.port": str(s.spark_connect_port),
        # One executor per worker, taking all it offers.
        "spark.executor.cores": str(s.spark_worker_cores),
        "spark.executor.memory": s.spark_worker_memory,
        "spark.pyspark.python": str(python(ctx)),
        "spark.pyspark.driver.python": str(python(ctx)),
        "spark.driver.extraClassPath": f"{s3a_libs(ctx)}/*",
        "spark.executor.extraClassPath": f"{s3a_libs(ctx)}/*",
        "spark.driver.host": s.advertised_host,
        "spark.driver.bindAddress": s.bind_host,
        "spark.ui.enabled": "false",
        **s3a_conf(s.s3_endpoint, s.s3_region),
    }
    return conf


def local_dir(ctx: Context) -> Path:
    path = ctx.data_dir(NAME) / "local"
    path.mkdir(parents=True, exist_ok=True)
    return path


def work_dir(ctx: Context) -> Path:
    path = ctx.data_dir(NAME) / "work"
    path.mkdir(parents=True, exist_ok=True)
    return path


def env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    java = Path(java_command())
    return {
        "SPARK_HOME": str(spark_home(ctx)),
        # spark-class finds java through JAVA_HOME, else PATH.
        "JAVA_HOME": str(java.resolve().parents[1]) if java.is_absolute() else "",
        "SPARK_LOG_DIR": str(ctx.log_dir / NAME),
        "SPARK_WORKER_DIR": str(work_dir(ctx)),
        "SPARK_LOCAL_DIRS": str(local_dir(ctx)),
        # This process's own address (each container's, in Compose), never another's.
        "SPARK_LOCAL_IP": s.advertised_host,
        "PYSPARK_PYTHON": str(python(ctx)),
        # For S3A on the Connect server's driver and, inherited, on the executors.
        "AWS_ACCESS_KEY_ID": s.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": s.s3_secret_key.get_secret_value(),
        "AWS_REGION": s.s3_region,
    }


def connect_token_env(ctx: Context) -> dict[str, str]:
    """The server reads its token from the environment: not on the command line (`ps`)."""
    token = ctx.settings.spark_connect_token
    if token is None or not token.get_secret_value():
        return {}
    return {"SPARK_CONNECT_AUTHENTICATE_TOKEN": token.get_secret_value()}


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    spark_class = str(spark_home(ctx) / "bin" / "spark-class")
    conf = [arg for key, value in connect_conf(ctx).items() for arg in ("--conf", f"{key}={value}")]
    environment = env(ctx)
    return [
        Program(
            name="spark-master",
            command=[spark_class, MASTER_CLASS, "--host", s.advertised_host,
                     "--port", str(s.spark_master_port),
                     "--webui-port", str(s.spark_master_web_port)],
            env=environment, directory=ctx.data_dir(NAME),
            health=_master_answers,
        ),
        Program(
            name="spark-worker",
            command=[spark_class, WORKER_CLASS, "--host", s.advertised_host,
                     "--webui-port", str(s.spark_worker_web_port),
                     "--cores", str(s.spark_worker_cores), "--memory", s.spark_worker_memory,
                     "--work-dir", str(work_dir(ctx)), master_url(ctx)],
            env=environment, directory=ctx.data_dir(NAME),
            health=_worker_registered,
        ),
        Program(
            name="spark-connect",
            # What sbin/start-connect-server.sh runs, in the foreground for supervisord.
            command=[spark_class, SUBMIT_CLASS, "--class", CONNECT_CLASS,
                     "--name", CONNECT_APP_NAME, "--master", master_url(ctx),
                     "--driver-memory", s.spark_connect_memory, *conf, "spark-internal"],
            env={**environment, **connect_token_env(ctx)}, directory=ctx.data_dir(NAME),
            stop_wait=30,
            health=_connect_answers,
        ),
    ]


def master_state(url: str) -> dict[str, Any]:
    """The master's JSON status (its web UI's /json/)."""
    try:
        resp = httpx.get(f"{url}/json/", timeout=3)
    except httpx.HTTPError as exc:
        raise NotReady(f"master: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise NotReady(f"master's /json/ answered {resp.status_code}")
    return resp.json()  # type: ignore[no-any-return]


def check_cluster(state: dict[str, Any]) -> None:
    """NotReady unless a worker is ALIVE and the Connect server's application is running."""
    workers = state.get("workers") or []
    alive = [w for w in workers if isinstance(w, dict) and w.get("state") == "ALIVE"]
    if not alive:
        raise NotReady(f"no ALIVE worker registered with the master ({len(workers)} known)")
    apps = state.get("activeapps") or []
    if not any(isinstance(a, dict) and a.get("name") == CONNECT_APP_NAME for a in apps):
        raise NotReady(f"the {CONNECT_APP_NAME!r} application is not registered yet")


def _master_answers(ctx: Context) -> None:
    master_state(web_url(ctx))


def _worker_registered(ctx: Context) -> None:
    """This worker (in a container of its own) is ALIVE at the master."""
    me = ctx.settings.advertised_host
    workers = master_state(web_url(ctx)).get("workers") or []
    if not any(w.get("host") == me and w.get("state") == "ALIVE" for w in workers):
        raise NotReady(f"no ALIVE worker at {me} registered with the master")


def _connect_answers(ctx: Context) -> None:
    s = ctx.settings
    try:
        socket.create_connection((s.spark_connect_host or s.host("spark"), s.spark_connect_port),
                                 timeout=3).close()
    except OSError as exc:
        raise NotReady(f"Spark Connect port {s.spark_connect_port}: {exc}") from exc


def ready(ctx: Context) -> None:
    check_cluster(master_state(web_url(ctx)))
    _connect_answers(ctx)


def ports(ctx: Context) -> list[int]:
    s = ctx.settings
    return [s.spark_master_port, s.spark_master_web_port, s.spark_worker_web_port,
            s.spark_connect_port]


SERVICE = Service(
    name=NAME,
    packages=(*JAVA_PACKAGES, "maven", "procps"),
    description="Spark standalone master, worker and Spark Connect server",
    programs=programs,
    ready=ready,
    url=connect_url,
    ports=ports,
    install=install,
    start_timeout=180,
)
